"""Shared by every test folder: pytest puts this folder on `sys.path`, so tests below it import `helpers`."""
