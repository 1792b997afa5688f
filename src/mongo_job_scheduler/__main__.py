"""``python -m mongo_job_scheduler``: the ``mongo-job-scheduler`` command line."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="mongo-job-scheduler")
