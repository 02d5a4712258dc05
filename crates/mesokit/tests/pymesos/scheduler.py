"""A small pymesos scheduler, used unchanged against `mesokit local` by the compatibility test.

usage: scheduler.py MASTER_HOST:PORT N_COMMAND_TASKS N_EXECUTOR_TASKS EXECUTOR_COMMAND

Launches N command tasks (run by the agent's command executor) and N tasks under a custom
executor (EXECUTOR_COMMAND, a pymesos executor), waits until every task is TASK_FINISHED, and
exits 0; any other terminal state, or no progress for 60 s, exits 1. Status updates are printed
to stdout as JSON lines for the test to check.
"""
import getpass
import json
import sys
import threading
import time

from pymesos import MesosSchedulerDriver, Scheduler

master, n_cmd, n_exec, executor_cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def scalar(offer, name):
    return sum(r['scalar']['value'] for r in offer['resources'] if r['name'] == name)


def res(cpus, mem):
    return [
        dict(name='cpus', type='SCALAR', scalar=dict(value=cpus)),
        dict(name='mem', type='SCALAR', scalar=dict(value=mem)),
    ]


class Compat(Scheduler):
    def __init__(self):
        self.pending = [('cmd', i) for i in range(n_cmd)] + [('exec', i) for i in range(n_exec)]
        self.finished = set()
        self.failed = None
        self.done = threading.Event()
        self.progress = time.time()
        self.lock = threading.Lock()

    def task(self, kind, i, agent_id):
        if kind == 'cmd':
            return dict(
                name='cmd-%d' % i, task_id=dict(value='cmd-%d' % i), agent_id=agent_id,
                resources=res(0.1, 32),
                command=dict(value='echo hello from $MESOS_EXECUTOR_ID in "$MESOS_SANDBOX"; test -n "$MESOS_SANDBOX"'),
            )
        return dict(
            name='exec-%d' % i, task_id=dict(value='exec-%d' % i), agent_id=agent_id,
            resources=res(0.1, 32),
            executor=dict(
                executor_id=dict(value='pyexec-%d' % i),
                name='pymesos compat executor',
                command=dict(value=executor_cmd),
                resources=res(0.1, 32),
            ),
        )

    def resourceOffers(self, driver, offers):
        for offer in offers:
            cpus, mem = scalar(offer, 'cpus'), scalar(offer, 'mem')
            tasks = []
            with self.lock:
                while self.pending:
                    kind, i = self.pending[0]
                    need_cpus, need_mem = (0.1, 32) if kind == 'cmd' else (0.2, 64)
                    if cpus < need_cpus - 1e-9 or mem < need_mem:
                        break
                    self.pending.pop(0)
                    cpus -= need_cpus
                    mem -= need_mem
                    tasks.append(self.task(kind, i, offer['agent_id']))
            if tasks:
                driver.launchTasks(offer['id'], tasks)
            else:
                driver.declineOffer(offer['id'], dict(refuse_seconds=1))

    def statusUpdate(self, driver, update):
        print(json.dumps(update), flush=True)
        tid, state = update['task_id']['value'], update['state']
        with self.lock:
            self.progress = time.time()
            if state == 'TASK_FINISHED':
                self.finished.add(tid)
            elif state not in ('TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING'):
                self.failed = '%s: %s %s' % (tid, state, update.get('message', ''))
            if self.failed or len(self.finished) == n_cmd + n_exec:
                self.done.set()

    def error(self, driver, message):
        self.failed = 'framework error: %s' % message
        self.done.set()


sched = Compat()
framework = dict(user=getpass.getuser(), name='pymesos-compat', hostname='localhost',
                 failover_timeout=0.0)
driver = MesosSchedulerDriver(sched, framework, master, use_addict=False)
driver.start()
while not sched.done.wait(0.2):
    if time.time() - sched.progress > 60:
        sched.failed = 'no progress for 60 s (finished: %s)' % sorted(sched.finished)
        break
driver.stop()
driver.join()
if sched.failed:
    print('FAILED: ' + sched.failed, file=sys.stderr)
    sys.exit(1)
print('ALL FINISHED %d' % len(sched.finished), file=sys.stderr)
