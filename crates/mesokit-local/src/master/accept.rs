//! ACCEPT: offer validation (all or nothing), LAUNCH and LAUNCH_GROUP with task validation,
//! and the bookkeeping of the tasks and executors launched (`Master::accept` and `_accept` in
//! Mesos).

use std::collections::BTreeSet;
use std::time::Instant;

use mesokit_proto::resources::Resources;
use mesokit_proto::v1::{
    self, TaskState,
    framework_info::capability::Type as Capability,
    offer::operation,
    scheduler::{self, call, event},
    task_status::Reason,
};
use tracing::{info, warn};

use super::core::{Filter, Master, event as core_event, inject_allocation, update_event};
use super::validation::{self, TaskContext};
use crate::messages::ToAgent;

impl Master {
    /// `validation::offer::validate`.
    pub(super) fn validate_offers(&self, fid: &str, ids: &[v1::OfferId]) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(&id.value) {
                return Err(format!("Duplicate offer {} in offer list", id.value));
            }
        }
        let mut found = Vec::new();
        for id in ids {
            match self.offers.get(&id.value) {
                Some(o) => found.push(&o.offer),
                None => return Err(format!("Offer {} is no longer valid", id.value)),
            }
        }
        for offer in &found {
            if offer.framework_id.value != fid {
                return Err(format!(
                    "Offer {} has invalid framework {} while framework {fid} is expected",
                    offer.id.value, offer.framework_id.value
                ));
            }
        }
        let role = |o: &v1::Offer| {
            o.allocation_info
                .as_ref()
                .and_then(|a| a.role.clone())
                .unwrap_or_default()
        };
        if let Some(first) = found.first() {
            for offer in &found {
                if role(offer) != role(first) {
                    return Err(format!(
                        "Aggregated offers must be allocated to the same role. Offer {} uses \
                         role '{} but another is using role '{}",
                        offer.id.value,
                        role(offer),
                        role(first)
                    ));
                }
            }
            for offer in &found {
                if offer.agent_id != first.agent_id {
                    return Err(format!(
                        "Aggregated offers must belong to one single agent. Offer {} uses agent \
                         {} and agent {}",
                        offer.id.value, offer.agent_id.value, first.agent_id.value
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn launch_tasks(op: &v1::offer::Operation) -> Vec<&v1::TaskInfo> {
        match op.r#type.and_then(|t| operation::Type::try_from(t).ok()) {
            Some(operation::Type::Launch) => op
                .launch
                .as_ref()
                .map(|l| l.task_infos.iter().collect())
                .unwrap_or_default(),
            Some(operation::Type::LaunchGroup) => op
                .launch_group
                .as_ref()
                .map(|l| l.task_group.tasks.iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub(super) fn accept(&mut self, now: Instant, fid: &str, accept: call::Accept) {
        let checked = if accept.offer_ids.is_empty() {
            Err("No offers specified".to_owned())
        } else {
            self.validate_offers(fid, &accept.offer_ids)
        };
        if let Err(e) = checked {
            warn!(framework_id = fid, error = %e, "ACCEPT with invalid offers");
            for id in &accept.offer_ids {
                self.remove_offer(now, &id.value, false, None);
            }
            let state = if self.frameworks[fid].capable(Capability::PartitionAware) {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for op in &accept.operations {
                if !is_launch(op) {
                    self.drop_operation(
                        fid,
                        op,
                        format!("Operation attempted with invalid offers: {e}"),
                    );
                    continue;
                }
                for task in Self::launch_tasks(op) {
                    let status = self.master_status(
                        now,
                        &task.task_id.value,
                        state,
                        Reason::InvalidOffers,
                        format!("Task launched with invalid offers: {e}"),
                        Some(task.agent_id.clone()),
                        None,
                    );
                    self.counters.count_terminal(state as i32);
                    self.send(fid, update_event(status));
                }
            }
            return;
        }

        let mut offered = Resources::new();
        let mut agent_id = None;
        let mut role = String::new();
        for id in &accept.offer_ids {
            if let Some(offer) = self.remove_offer(now, &id.value, false, None) {
                offered.add(&Resources::from_vec(offer.resources));
                role = offer
                    .allocation_info
                    .and_then(|a| a.role)
                    .unwrap_or_default();
                agent_id = Some(offer.agent_id);
            }
        }
        let agent_id = agent_id.expect("validated offers exist");
        let mut remaining = offered;

        for mut op in accept.operations {
            let ty = op.r#type.and_then(|t| operation::Type::try_from(t).ok());
            match ty {
                Some(operation::Type::Launch) => {
                    let tasks = op.launch.take().map(|l| l.task_infos).unwrap_or_default();
                    if op.id.is_some() {
                        for task in &tasks {
                            self.task_error(
                                now,
                                fid,
                                task,
                                Reason::TaskInvalid,
                                "The `id` field cannot be set on LAUNCH operations".into(),
                            );
                        }
                        continue;
                    }
                    for task in tasks {
                        self.launch(now, fid, &agent_id, &role, task, &mut remaining);
                    }
                }
                Some(operation::Type::LaunchGroup) => {
                    let Some(group) = op.launch_group.take() else {
                        continue;
                    };
                    if op.id.is_some() {
                        for task in &group.task_group.tasks {
                            self.task_error(
                                now,
                                fid,
                                task,
                                Reason::TaskGroupInvalid,
                                "The `id` field cannot be set on LAUNCH_GROUP operations".into(),
                            );
                        }
                        continue;
                    }
                    self.launch_group(now, fid, &agent_id, &role, *group, &mut remaining);
                }
                Some(operation::Type::Unknown) | None => {
                    warn!(framework_id = fid, "ignoring an unknown offer operation");
                }
                Some(_) if op.id.is_some() => {
                    // Operation feedback needs agents with resource providers.
                    let message = format!(
                        "Operation requested feedback, but agent {} does not have the required \
                         RESOURCE_PROVIDER capability",
                        agent_id.value
                    );
                    self.drop_operation(fid, &op, message);
                }
                Some(operation::Type::Reserve) => {
                    let reserve = op.reserve.clone().unwrap_or_default();
                    let applied =
                        if reserve.source.is_empty() {
                            self.reserve(fid, &agent_id, &role, reserve.resources, &mut remaining)
                        } else {
                            Err("Reservation updates are not yet implemented for the scheduler API."
                            .into())
                        };
                    if let Err(message) = applied {
                        self.drop_operation(fid, &op, message);
                    }
                }
                Some(operation::Type::Unreserve) => {
                    let resources = op.unreserve.clone().unwrap_or_default().resources;
                    if let Err(message) =
                        self.unreserve(&agent_id, &role, resources, &mut remaining)
                    {
                        self.drop_operation(fid, &op, message);
                    }
                }
                Some(other) => {
                    // Volumes and disks are not modelled by this master.
                    let message = format!(
                        "Operation {} is not supported by this master",
                        other.as_str_name()
                    );
                    self.drop_operation(fid, &op, message);
                }
            }
        }

        // What no operation used is declined with `accept.filters`.
        if !remaining.is_empty() {
            let refuse = Self::refuse_duration(accept.filters.as_ref());
            if !refuse.is_zero() {
                let mut refused = remaining;
                refused.unallocate();
                let refuse = refuse.max(self.config.allocation_interval);
                self.frameworks
                    .get_mut(fid)
                    .expect("present")
                    .filters
                    .push(Filter {
                        role,
                        agent: agent_id.value.clone(),
                        resources: refused,
                        expires: now + refuse,
                    });
            }
        }
    }

    /// RESERVE from a scheduler: `resources` are the dynamically reserved resources wanted; their
    /// unreserved form is taken from what is left of the offers and the agent's total changes.
    fn reserve(
        &mut self,
        fid: &str,
        agent_id: &v1::AgentId,
        role: &str,
        mut resources: Vec<v1::Resource>,
        remaining: &mut Resources,
    ) -> Result<(), String> {
        let on_agent = |e: String| format!("{e}; on agent {}", agent_id.value);
        inject_allocation(&mut resources, role);
        validation::check_resources(&resources)
            .map_err(|e| on_agent(format!("Invalid resources: {e}")))?;
        let framework = &self.frameworks[fid];
        let roles = framework.roles();
        for r in &resources {
            let shown = Resources::from_vec(vec![r.clone()]);
            let Some(reservation) = r.reservations.last().filter(|x| is_dynamic(x)) else {
                return Err(on_agent(format!(
                    "Resource {shown} is not dynamically reserved"
                )));
            };
            if let Some(principal) = &framework.info.principal {
                match &reservation.principal {
                    None => {
                        return Err(on_agent(format!(
                            "A reserve operation was attempted by principal '{principal}', but \
                             there is a reserved resource in the request with no principal set"
                        )));
                    }
                    Some(p) if p != principal => {
                        return Err(on_agent(format!(
                            "A reserve operation was attempted by authenticated principal \
                             '{principal}', which does not match a reserved resource in the \
                             request with principal '{p}'"
                        )));
                    }
                    Some(_) => {}
                }
            }
            let reserved_role = reservation.role.as_deref().unwrap_or("");
            if reserved_role != role {
                return Err(on_agent(format!(
                    "A reserve operation was attempted for a resource with role \
                     '{reserved_role}', but the resource was allocated to role '{role}'"
                )));
            }
            if !roles.contains(reserved_role) {
                return Err(on_agent(format!(
                    "A reserve operation was attempted for a resource with role \
                     '{reserved_role}', but the framework can only reserve resources with roles \
                     '{}'",
                    validation::stringify_set(&roles)
                )));
            }
        }
        let converted = Resources::from_vec(resources.clone());
        let consumed = Resources::from_vec(
            resources
                .into_iter()
                .map(|mut r| {
                    r.reservations.pop();
                    r
                })
                .collect(),
        );
        self.convert(agent_id, consumed, converted, remaining)
    }

    /// UNRESERVE from a scheduler: the dynamically reserved `resources` go back to unreserved.
    fn unreserve(
        &mut self,
        agent_id: &v1::AgentId,
        role: &str,
        mut resources: Vec<v1::Resource>,
        remaining: &mut Resources,
    ) -> Result<(), String> {
        let on_agent = |e: String| format!("{e}; on agent {}", agent_id.value);
        inject_allocation(&mut resources, role);
        validation::check_resources(&resources)
            .map_err(|e| on_agent(format!("Invalid resources: {e}")))?;
        for r in &resources {
            let shown = Resources::from_vec(vec![r.clone()]);
            if !r.reservations.last().is_some_and(is_dynamic) {
                return Err(on_agent(format!(
                    "Resource {shown} is not dynamically reserved"
                )));
            }
            if r.disk.as_ref().is_some_and(|d| d.persistence.is_some()) {
                return Err(on_agent(format!(
                    "A dynamically reserved persistent volume {shown} cannot be unreserved \
                     directly. Please destroy the persistent volume first then unreserve the \
                     resource"
                )));
            }
        }
        let consumed = Resources::from_vec(resources.clone());
        let converted = Resources::from_vec(
            resources
                .into_iter()
                .map(|mut r| {
                    r.reservations.pop();
                    r
                })
                .collect(),
        );
        self.convert(agent_id, consumed, converted, remaining)
    }

    /// Applies a resource conversion to what is left of the offers and to the agent's total.
    fn convert(
        &mut self,
        agent_id: &v1::AgentId,
        consumed: Resources,
        converted: Resources,
        remaining: &mut Resources,
    ) -> Result<(), String> {
        if !remaining.contains(&consumed) {
            return Err(format!("{remaining} does not contain {consumed}"));
        }
        remaining.subtract(&consumed);
        remaining.add(&converted);
        if let Some(agent) = self.agents.get_mut(&agent_id.value) {
            let (mut consumed, mut converted) = (consumed, converted);
            consumed.unallocate();
            converted.unallocate();
            agent.total.subtract(&consumed);
            agent.total.add(&converted);
            info!(agent_id = %agent_id.value, %consumed, %converted, "resources converted");
        }
        Ok(())
    }

    /// `Master::drop` for an operation: OPERATION_ERROR to the framework if it asked for
    /// feedback (set `id`), else only a log line.
    fn drop_operation(&mut self, fid: &str, op: &v1::offer::Operation, message: String) {
        warn!(framework_id = fid, operation = ?op.r#type, %message, "dropping offer operation");
        let Some(id) = op.id.clone() else {
            return;
        };
        let update = scheduler::Event {
            update_operation_status: Some(event::UpdateOperationStatus {
                status: v1::OperationStatus {
                    operation_id: Some(id),
                    state: v1::OperationState::OperationError as i32,
                    message: Some(message),
                    ..Default::default()
                },
            }),
            ..core_event(event::Type::UpdateOperationStatus)
        };
        self.send(fid, update);
    }

    pub(super) fn task_error(
        &mut self,
        now: Instant,
        fid: &str,
        task: &v1::TaskInfo,
        reason: Reason,
        message: String,
    ) {
        info!(framework_id = fid, task_id = %task.task_id.value, %message, "task invalid");
        let status = self.master_status(
            now,
            &task.task_id.value,
            TaskState::TaskError,
            reason,
            message,
            Some(task.agent_id.clone()),
            None,
        );
        self.counters.count_terminal(TaskState::TaskError as i32);
        self.send(fid, update_event(status));
    }

    pub(super) fn task_context_check<T>(
        &self,
        fid: &str,
        agent_id: &v1::AgentId,
        check: impl FnOnce(&TaskContext<'_>) -> T,
    ) -> T {
        let framework = &self.frameworks[fid];
        let task_exists = |id: &str| framework.tasks.contains_key(id);
        let executor = |id: &str| {
            framework
                .executors
                .get(&(agent_id.value.clone(), id.to_owned()))
                .cloned()
        };
        let ctx = TaskContext {
            framework_id: &framework.id,
            task_exists: &task_exists,
            agent_id,
            executor: &executor,
        };
        check(&ctx)
    }

    pub(super) fn launch(
        &mut self,
        now: Instant,
        fid: &str,
        agent_id: &v1::AgentId,
        role: &str,
        mut task: v1::TaskInfo,
        remaining: &mut Resources,
    ) {
        inject_allocation(&mut task.resources, role);
        if let Some(executor) = task.executor.as_deref_mut() {
            inject_allocation(&mut executor.resources, role);
            if executor.framework_id.is_none() {
                executor.framework_id = Some(self.frameworks[fid].id.clone());
            }
        }
        let checked = self.task_context_check(fid, agent_id, |ctx| {
            validation::validate_task(&task, ctx, remaining)
        });
        let consumed = match checked {
            Ok(consumed) => consumed,
            Err(message) => {
                self.task_error(now, fid, &task, Reason::TaskInvalid, message);
                return;
            }
        };
        remaining.subtract(&consumed);
        let executor = task.executor.as_deref().cloned();
        if let Some(executor) = &executor {
            self.add_executor(fid, agent_id, executor);
        }
        self.add_task(fid, &task, executor.as_ref().map(|e| e.executor_id.clone()));
        info!(
            framework_id = fid,
            task_id = %task.task_id.value,
            agent_id = %agent_id.value,
            "launching task",
        );
        let framework = self.frameworks[fid].info.clone();
        self.send_agent(
            agent_id,
            ToAgent::RunTask {
                framework,
                executor,
                task,
            },
        );
    }

    pub(super) fn launch_group(
        &mut self,
        now: Instant,
        fid: &str,
        agent_id: &v1::AgentId,
        role: &str,
        group: operation::LaunchGroup,
        remaining: &mut Resources,
    ) {
        let mut executor = group.executor;
        let mut task_group = group.task_group;
        inject_allocation(&mut executor.resources, role);
        for task in &mut task_group.tasks {
            inject_allocation(&mut task.resources, role);
            match task.executor.as_deref_mut() {
                Some(e) => inject_allocation(&mut e.resources, role),
                None => task.executor = Some(Box::new(executor.clone())),
            }
        }
        let checked = self.task_context_check(fid, agent_id, |ctx| {
            validation::validate_task_group(&task_group, &executor, ctx, remaining)
        });
        let consumed = match checked {
            Ok(consumed) => consumed,
            Err(message) => {
                for task in &task_group.tasks {
                    self.task_error(now, fid, task, Reason::TaskGroupInvalid, message.clone());
                }
                return;
            }
        };
        remaining.subtract(&consumed);
        self.add_executor(fid, agent_id, &executor);
        for task in &task_group.tasks {
            self.add_task(fid, task, Some(executor.executor_id.clone()));
        }
        info!(
            framework_id = fid,
            tasks = ?task_group.tasks.iter().map(|t| &t.task_id.value).collect::<Vec<_>>(),
            agent_id = %agent_id.value,
            "launching task group"
        );
        let framework = self.frameworks[fid].info.clone();
        self.send_agent(
            agent_id,
            ToAgent::RunTaskGroup {
                framework,
                executor,
                group: task_group,
            },
        );
    }

    /// Records an executor (if it is not running yet) and takes its resources.
    pub(super) fn add_executor(
        &mut self,
        fid: &str,
        agent_id: &v1::AgentId,
        executor: &v1::ExecutorInfo,
    ) {
        let key = (agent_id.value.clone(), executor.executor_id.value.clone());
        let framework = self.frameworks.get_mut(fid).expect("present");
        if framework.executors.contains_key(&key) {
            return;
        }
        let resources = Resources::from_vec(executor.resources.clone());
        framework.used.add(&resources);
        framework.executors.insert(key, executor.clone());
        if let Some(agent) = self.agents.get_mut(&agent_id.value) {
            agent.used.add(&resources);
        }
    }

    pub(super) fn remove_executor(&mut self, fid: &str, key: &(String, String)) {
        let Some(framework) = self.frameworks.get_mut(fid) else {
            return;
        };
        let Some(executor) = framework.executors.remove(key) else {
            return;
        };
        let resources = Resources::from_vec(executor.resources);
        framework.used.subtract(&resources);
        if let Some(agent) = self.agents.get_mut(&key.0) {
            agent.used.subtract(&resources);
        }
    }

    /// Adds a task in TASK_STAGING and takes its resources.
    pub(super) fn add_task(
        &mut self,
        fid: &str,
        info: &v1::TaskInfo,
        executor_id: Option<v1::ExecutorId>,
    ) {
        let framework = self.frameworks.get_mut(fid).expect("present");
        let user = info
            .command
            .as_ref()
            .and_then(|c| c.user.clone())
            .or_else(|| {
                info.executor
                    .as_ref()
                    .and_then(|e| e.command.as_ref())
                    .and_then(|c| c.user.clone())
            })
            .or_else(|| Some(framework.info.user.clone()));
        let task = v1::Task {
            name: info.name.clone(),
            task_id: info.task_id.clone(),
            framework_id: framework.id.clone(),
            executor_id,
            agent_id: info.agent_id.clone(),
            state: TaskState::TaskStaging as i32,
            resources: info.resources.clone(),
            statuses: Vec::new(),
            status_update_state: None,
            status_update_uuid: None,
            labels: info.labels.clone(),
            discovery: info.discovery.clone(),
            container: info.container.clone(),
            health_check: info.health_check.clone(),
            kill_policy: info.kill_policy,
            user,
            limits: info.limits.clone(),
        };
        let resources = Resources::from_vec(task.resources.clone());
        framework.used.add(&resources);
        framework.tasks.insert(task.task_id.value.clone(), task);
        if let Some(agent) = self.agents.get_mut(&info.agent_id.value) {
            agent.used.add(&resources);
        }
    }
}

fn is_launch(op: &v1::offer::Operation) -> bool {
    matches!(
        op.r#type.and_then(|t| operation::Type::try_from(t).ok()),
        Some(operation::Type::Launch | operation::Type::LaunchGroup)
    )
}

fn is_dynamic(r: &v1::resource::ReservationInfo) -> bool {
    r.r#type == Some(v1::resource::reservation_info::Type::Dynamic as i32)
}
