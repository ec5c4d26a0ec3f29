"""`classreg sweep`: a regularization grid as a folder of points, run as SLURM job arrays or here.

spec.py (the YAML spec and its points), resources.py (SLURM resources against trainer settings),
folder.py (the sweep folder), submit.py (submit, resume, cancel), slurm.py (sbatch, squeue, scancel),
status.py (one status file per point), task.py (the array task's side), local.py (the local executor),
report.py (status and plan output), cli.py (the commands).
"""
