"""The course folder and nbgrader: settings, student versions, submissions, the gradebook."""
