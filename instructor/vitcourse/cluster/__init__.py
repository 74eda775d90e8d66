"""Grading past one machine: a class split into shards that batch jobs grade apart (Slurm job arrays, Kubernetes
Indexed Jobs), each shard's results written atomically, merged into one gradebook. No scheduler of our own."""
