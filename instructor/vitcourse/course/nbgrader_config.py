# nbgrader settings for the "ViT, step by step" course, and the grader's own (c.VitCourse).
#
# `make student` copies this file into the course folder (course/nbgrader_config.py) once, builds the
# student versions with the same settings and registers the assignments in nbgrader's gradebook
# (course/gradebook.db), so nbgrader's own tools (formgrader, `nbgrader export`, `nbgrader validate`,
# `nbgrader release_feedback`) work on the course folder. Grading itself does not use nbgrader's autograde,
# which would run student code unconfined and decide grades inside the student's process; see
# vitcourse/grading.py. Edit the course folder's copy to change a setting for your course.
c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "vitsteps"
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

# `nbgrader export` writes here, so that it never overwrites the grader's own course/grades.csv.
c.CsvExportPlugin.to = "nbgrader_grades.csv"

# The grader (vitcourse.grading): the exercise table it grades with, and the fraction of an exercise's points
# kept when the exercise is flagged (the package's reference or a forbidden function called during the
# grader's calls, a copy of the reference's code, code the static scan flags).
c.VitCourse.exercises = "vitcourse.judge.exercises"
c.VitCourse.flagged_credit = 0.0
