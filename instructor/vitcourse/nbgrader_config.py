# nbgrader settings for the "ViT, step by step" course.
#
# `make student` copies this file into the course folder (course/nbgrader_config.py) and builds the
# student versions with the same settings, so nbgrader's own tools (formgrader, `nbgrader validate`)
# agree with `make student` and `make autograde`. Grading itself does not use nbgrader's autograde,
# which would run student code unconfined; see vitcourse/grading.py.
c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "vitsteps"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# What a solution becomes in the student version: a stub that fails its check.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearSolutions.enforce_metadata = True
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"
c.ClearHiddenTests.enforce_metadata = True

# Student versions carry no outputs: students run the cells themselves.
c.ClearOutput.remove_metadata_fields = ["collapsed", "scrolled", "execution"]

# Limits for nbgrader's own execution, if an instructor uses it on trusted notebooks.
c.Execute.timeout = 120
c.Execute.allow_errors = True
