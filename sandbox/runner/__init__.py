"""The sandbox job server: runs untrusted candidate programs, one forked child per job.

Run as a folder, `python3 -I sandbox/runner` (see __main__.py): standard library only.

The runner starts once (warm: the interpreter and numpy are already loaded), then reads
one JSON job per line on stdin and answers one JSON line per job on stdout (or both over
a unix socket it connects to, with --connect):

  -> {"ready": true, "protocol": 2, ...}                          once, at start
  <- {"id", "token", "files": {name: text}, "entry", "timeout_s", "memory_mb",
      "output_limit_bytes", "file_limit_bytes"}                   one job
  -> {"id", "token", "status", "seconds", "result_json", "stdout", "stdout_bytes",
      "stdout_truncated", "error", "signal", "exit_code", "retire"}  its answer

The token is a fresh secret per job that the host accepts only back in this job's answer:
a candidate that could write to the runner's output could not forge an answer, because
the token exists only in the runner's memory (not readable to candidates, see
startup._protect_runner), never in the spawner's nor in a candidate's, which are forked from the
spawner, nor in any command line, environment or file. No candidate can open the runner's
streams in the first place: the runner is not dumpable, and where the kernel ignores that
for /proc/<pid>/fd (gVisor), the host starts it as root to take a uid of its own
(--runner-uid, --candidate-user: see startup.py).

Two processes share the work. The runner speaks the protocol, writes the job's files into
a fresh scratch folder, watches the candidate (its output, its result, the wall-clock
limit), classifies its end and wipes the scratch folder. The spawner, a copy of the warm
runner made once at start, does nothing but fork: for each job it forks the candidate,
kills it at the wall-clock limit, reaps it, kills whatever it left behind and reports
the exit status. Keeping the forks out of the runner matters for speed: after a fork
every page a process writes is a copy-on-write fault, and the spawner writes few pages
per job where the runner would write hundreds. The runner sleeps until the spawner's
report or the candidate's output wakes it: on a small VM every wake-up costs more than
the work it does.

Every job is answered only once what it left behind is gone: its leftover processes,
System V IPC objects and files, and a spawner it stopped or killed (replaced by a fresh
one). The cleaning up is on that job's account, in its seconds, before the host sends
the next job. A runner that cannot clean up (a process that will not die, files it
cannot remove) says so in its answer ("retire") and the host starts a new one.

The forked child makes the scratch folder its working directory and the head of
sys.path, applies rlimits, loads the entry file and calls its `main()`. The JSON text of
the return value travels back on a dedicated pipe (fd 3), so whatever the candidate
prints cannot corrupt the result or the protocol. Prints go to a second pipe, captured up
to the output limit. `"retire": true` asks the host to replace this runner.

In a container the runner is PID 1, so signals sent from inside the container cannot kill
it; locally it becomes a child subreaper. The spawner is a subreaper too, so orphans of a
candidate come back to it. A candidate can signal the spawner (same user); the runner
then reads the candidate's pipes until it ends or reaches its wall-clock limit (what it
returned or raised still counts), kills every other process and starts a new spawner:
the runner run anew, not a copy of it, whose memory by then holds earlier jobs.
The runner runs itself again at start with a fixed hash seed (see startup.py). The same
folder serves every sandbox backend.

Some kernels lack what the runner uses by default: gVisor (Docker's `runsc` runtime) has
no /proc/<pid>/task/<tid>/children, no /proc/sysvipc tables, no cgroup memory files in
the container and no pidfd_open. The runner finds out once, at start (kernel.py), and
uses an equally strict replacement for each: a process's children from the parent field
of every /proc/<pid>/stat, System V IPC objects from the kernel's counts (*_INFO) and by
removing every id handed out since the last job, and a candidate's end from SIGCHLD.
gVisor also gives a candidate's orphans to PID 1 rather than to the spawner (a
subreaper): after every job the runner kills and reaps every child of its own but the
spawner, before it answers. At each candidate's end the spawner first kills the
candidate's process group in one call, so mostly there are only the dead to reap; if
any other is alive (a fork bomb whose processes left the group), the runner, as the
container's init, ends every process but itself with one kill(-1), the spawner too, and
starts a fresh spawner.

Modules: startup (arguments, protection, the job loop), server (one job), spawner, child
(the candidate's side of the fork), processes (what a job leaves behind), kernel (what the
kernel offers), forkspeed (CPython fork-speed tricks; `--no-fork-tricks` turns them off)
and protocol (the wire constants).
"""
