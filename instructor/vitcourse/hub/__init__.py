"""The course on a JupyterHub: `make classroom` (classroom.py), its hub config, its login, nbgrader's exchange."""
