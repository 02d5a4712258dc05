"""The pymesos side of bench/executor_footprint.sh: a pymesos executor that runs each task's
shell command (its `data`, as a custom executor gets it) as a process of its own, reports
TASK_RUNNING once it is forked, the terminal state when it ends, and kills it on KILL or
shutdown."""
import base64
import os
import signal
import subprocess
import threading

from pymesos import Executor, MesosExecutorDriver


class Bench(Executor):
    def __init__(self):
        self.procs = {}

    def launchTask(self, driver, task):
        task_id = task['task_id']
        command = base64.b64decode(task['data']).decode()
        proc = subprocess.Popen(command, shell=True, start_new_session=True)
        self.procs[task_id['value']] = proc
        driver.sendStatusUpdate(dict(task_id=task_id, state='TASK_RUNNING'))

        def wait():
            code = proc.wait()
            state = 'TASK_FINISHED' if code == 0 else 'TASK_FAILED'
            driver.sendStatusUpdate(dict(task_id=task_id, state=state,
                                         message='exited with %d' % code))
        threading.Thread(target=wait, daemon=True).start()

    def killTask(self, driver, task_id):
        proc = self.procs.get(task_id['value'])
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def shutdown(self, driver):
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


MesosExecutorDriver(Bench()).run()
