"""A small pymesos executor, run unchanged by `mesokit local` as a custom executor.

Each launched task reports TASK_RUNNING, then TASK_FINISHED with a message naming the sandbox.
"""
import os
import threading

from pymesos import Executor, MesosExecutorDriver


class Compat(Executor):
    def launchTask(self, driver, task):
        def run():
            driver.sendStatusUpdate(dict(task_id=task['task_id'], state='TASK_RUNNING'))
            driver.sendStatusUpdate(dict(
                task_id=task['task_id'], state='TASK_FINISHED',
                message='pymesos executor ran in %s' % os.environ.get('MESOS_SANDBOX', '?'),
            ))
        threading.Thread(target=run, daemon=True).start()


MesosExecutorDriver(Compat()).run()
