"""What runs inside the sandbox: the runner (zygote, holder, executor) and the plain-data wire format.

This folder and `vitcourse/__init__.py` are the only parts of vitcourse that the sandbox can read; nothing here
solves an exercise or decides a grade.
"""
