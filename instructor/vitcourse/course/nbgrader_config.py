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

# How long a submission may run: at the start of every autograde run the grader grades each assignment's own
# source notebook (the solution) through the same path, which must score full marks (else grading stops: the
# exercise table or the environment is broken), and gives each notebook budget_factor times that time, at
# least budget_floor_s seconds and at most --notebook-timeout. Past it, the remaining exercises score 0 with
# the reason "the submission used its time budget of N s (F x the reference's M s)". 5x leaves room for
# grading two notebooks per core at once and a slower machine; the floor covers start-up jitter on short ones.
c.VitCourse.budget_factor = 5.0
c.VitCourse.budget_floor_s = 30.0

# What a submitted notebook may hold, checked in a separate, bounded process before the grader builds anything
# from it. The series' largest solution notebook (08) is 497 KB with 59 cells at most (05), 2.3 KB of source
# in its largest cell (09), 378 KB of outputs (07) and JSON nested 9 deep; the limits are 40x, 34x, 110x, 43x
# and 7x those.
c.VitCourse.notebook_mb = 20.0
c.VitCourse.max_cells = 2000
c.VitCourse.cell_source_kb = 256.0
c.VitCourse.output_mb = 16.0
c.VitCourse.json_depth = 64
c.VitCourse.parse_seconds = 10.0
c.VitCourse.parse_memory_mb = 1024
