"""What judges outside the sandbox: the exercise table and its references, the verdict, the static scan, one
notebook's grade and its feedback page."""
