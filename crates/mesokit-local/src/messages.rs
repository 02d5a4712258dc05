//! Messages between the master and the agents. In real Mesos these are libprocess messages; in
//! one process they are plain values on channels. Ids are Mesos's (`v1::AgentId`, …).

use bytes::Bytes;
use mesokit_proto::v1::{
    AgentId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy, TaskGroupInfo,
    TaskId, TaskInfo, TaskState, TaskStatus,
};

/// From the master to one agent.
// Sent once per task over a channel; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ToAgent {
    /// Run one task. `executor` is `None` for a command task (the agent synthesises the command
    /// executor's `ExecutorInfo`, executor id = task id); otherwise the task's custom executor
    /// (with `framework_id` filled in). Task resources carry `allocation_info`.
    RunTask {
        framework: FrameworkInfo,
        executor: Option<ExecutorInfo>,
        task: TaskInfo,
    },
    /// Run a task group under `executor` (LAUNCH_GROUP).
    RunTaskGroup {
        framework: FrameworkInfo,
        executor: ExecutorInfo,
        group: TaskGroupInfo,
    },
    /// Kill a task; `kill_policy` from the KILL call overrides the task's.
    KillTask {
        framework_id: FrameworkId,
        task_id: TaskId,
        kill_policy: Option<KillPolicy>,
    },
    /// Shut one executor down (scheduler SHUTDOWN call).
    ShutdownExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    /// The framework was removed: shut down all its executors, send no more updates.
    ShutdownFramework { framework_id: FrameworkId },
    /// The scheduler acknowledged the update with this uuid.
    Acknowledge {
        framework_id: FrameworkId,
        task_id: TaskId,
        uuid: Bytes,
    },
    /// Scheduler MESSAGE for an executor (best effort).
    FrameworkMessage {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        data: Bytes,
    },
    /// The framework (re-)subscribed: its new info; pending status updates are re-sent at once.
    UpdateFramework { framework: FrameworkInfo },
}

/// From an agent to the master.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    /// A reliable status update (it has a uuid) to forward to the scheduler, with the task's
    /// latest state known to the agent (which may be ahead of `status.state`).
    StatusUpdate {
        agent_id: AgentId,
        framework_id: FrameworkId,
        status: TaskStatus,
        latest_state: TaskState,
    },
    /// An executor's MESSAGE for its scheduler (best effort).
    ExecutorMessage {
        agent_id: AgentId,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        data: Bytes,
    },
    /// An executor process ended. `status` is the raw wait status. The master releases the
    /// executor's resources, and for a custom executor sends the scheduler a FAILURE event.
    ExecutorExited {
        agent_id: AgentId,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        status: i32,
        command_executor: bool,
    },
    /// The agent stopped serving (it is restarting, or gone for good); its executors of
    /// checkpointing frameworks keep running.
    AgentDisconnected { agent_id: AgentId },
    /// The agent restarted with its checkpointed state; these are every (framework, task) it
    /// knows. Its recovered status updates follow on the same channel.
    AgentReregistered {
        agent_id: AgentId,
        tasks: Vec<(FrameworkId, TaskId)>,
    },
}
