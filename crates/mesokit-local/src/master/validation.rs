//! The master's checks of what schedulers send, with Mesos's messages: scheduler calls
//! (`src/master/validation.cpp`, `scheduler::call::validate`), `FrameworkInfo`, ids and roles,
//! and tasks in LAUNCH / LAUNCH_GROUP operations. Each check returns the text Mesos would.

use std::collections::BTreeSet;

use mesokit_proto::helpers::is_valid_uuid;
use mesokit_proto::resources::Resources;
use mesokit_proto::v1::{
    self, ExecutorInfo, FrameworkInfo, TaskInfo, executor_info,
    framework_info::capability::Type as Capability,
    scheduler::{self, call},
};

/// Mesos's `MIN_CPUS` / `MIN_MEM` for executors of task groups.
const MIN_CPUS: f64 = 0.01;
const MIN_MEM_MB: f64 = 32.0;

/// `validation::scheduler::call::validate`: the syntactic checks done before anything is looked
/// up. The error is the part after "Failed to validate scheduler::Call: ".
pub(super) fn validate_call(call: &scheduler::Call) -> Result<(), String> {
    let Some(ty) = call.r#type else {
        return Err("Expecting 'type' to be present".into());
    };
    let ty = call::Type::try_from(ty).unwrap_or(call::Type::Unknown);

    if ty == call::Type::Subscribe {
        let Some(subscribe) = &call.subscribe else {
            return Err("Expecting 'subscribe' to be present".into());
        };
        if id_value(subscribe.framework_info.id.as_ref()) != id_value(call.framework_id.as_ref()) {
            return Err("'framework_id' differs from 'subscribe.framework_info.id'".into());
        }
        return Ok(());
    }

    if call.framework_id.is_none() {
        return Err("Expecting 'framework_id' to be present".into());
    }

    let missing = |name: &str| Err(format!("Expecting '{name}' to be present"));
    match ty {
        call::Type::Accept if call.accept.is_none() => missing("accept"),
        call::Type::Decline if call.decline.is_none() => missing("decline"),
        call::Type::AcceptInverseOffers if call.accept_inverse_offers.is_none() => {
            missing("accept_inverse_offers")
        }
        call::Type::DeclineInverseOffers if call.decline_inverse_offers.is_none() => {
            missing("decline_inverse_offers")
        }
        call::Type::Kill if call.kill.is_none() => missing("kill"),
        call::Type::Shutdown if call.shutdown.is_none() => missing("shutdown"),
        call::Type::Acknowledge => match &call.acknowledge {
            None => missing("acknowledge"),
            Some(ack) if !is_valid_uuid(&ack.uuid) => Err("Not a valid UUID".into()),
            Some(_) => Ok(()),
        },
        call::Type::AcknowledgeOperationStatus => match &call.acknowledge_operation_status {
            None => missing("acknowledge_operation_status"),
            Some(ack) if !is_valid_uuid(&ack.uuid) => Err("Not a valid UUID".into()),
            Some(ack) if ack.agent_id.is_none() => missing("agent_id"),
            Some(_) => Ok(()),
        },
        call::Type::Reconcile if call.reconcile.is_none() => missing("reconcile"),
        call::Type::ReconcileOperations if call.reconcile_operations.is_none() => {
            missing("reconcile_operations")
        }
        call::Type::Message if call.message.is_none() => missing("message"),
        call::Type::Request if call.request.is_none() => missing("request"),
        call::Type::UpdateFramework => match &call.update_framework {
            None => missing("update_framework"),
            Some(update)
                if id_value(update.framework_info.id.as_ref())
                    != id_value(call.framework_id.as_ref()) =>
            {
                Err("'framework_id' differs from 'update_framework.framework_info.id'".into())
            }
            Some(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

fn id_value(id: Option<&v1::FrameworkId>) -> &str {
    id.map_or("", |id| id.value.as_str())
}

/// `common::validation::validateID`: the rules for framework-chosen ids (tasks, executors).
pub(super) fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("ID must not be empty".into());
    }
    if id.len() > 255 {
        return Err("ID must not be greater than 255 characters".into());
    }
    if id == "." || id == ".." {
        return Err(format!("'{id}' is disallowed"));
    }
    if id
        .bytes()
        .any(|c| c.is_ascii_control() || c == b'/' || c == b'\\')
    {
        return Err(format!("'{id}' contains invalid characters"));
    }
    Ok(())
}

/// `roles::validate`.
pub(super) fn validate_role(role: &str) -> Result<(), String> {
    if role == "*" {
        return Ok(());
    }
    if role.starts_with('/') {
        return Err(format!("Role '{role}' cannot start with a slash"));
    }
    if role.ends_with('/') {
        return Err(format!("Role '{role}' cannot end with a slash"));
    }
    if role.contains("//") {
        return Err(format!("Role '{role}' cannot contain two adjacent slashes"));
    }
    let components: Vec<&str> = role.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err("Role names cannot be the empty string".into());
    }
    for c in components {
        match c {
            "." => return Err(format!("Role '{role}' cannot include '.' as a component")),
            ".." => return Err(format!("Role '{role}' cannot include '..' as a component")),
            "*" => return Err(format!("Role '{role}' cannot include '*' as a component")),
            _ => {}
        }
        if c.starts_with('-') {
            return Err(format!(
                "Role component '{c}' is invalid because it starts with a dash"
            ));
        }
        if c.chars()
            .any(|ch| matches!(ch, '\x08' | '\x0b' | '\x0c' | '\n' | '\r' | '\t' | ' '))
        {
            return Err(format!(
                "Role component '{c}' is invalid because it contains backspace or whitespace"
            ));
        }
    }
    Ok(())
}

/// Whether the framework declared capability `cap`.
pub(super) fn has_capability(info: &FrameworkInfo, cap: Capability) -> bool {
    info.capabilities
        .iter()
        .any(|c| c.r#type == Some(cap as i32))
}

/// `protobuf::framework::getRoles`: `roles` for MULTI_ROLE frameworks, else the single `role`
/// (default `*`).
pub(super) fn framework_roles(info: &FrameworkInfo) -> BTreeSet<String> {
    if has_capability(info, Capability::MultiRole) {
        info.roles.iter().cloned().collect()
    } else {
        #[allow(deprecated)]
        let role = info.role().to_owned();
        BTreeSet::from([role])
    }
}

/// stout's `stringify(std::set<string>)`: `{ a, b }`.
pub(super) fn stringify_set<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.into_iter().map(String::as_str).collect();
    format!("{{ {} }}", items.join(", "))
}

/// `validation::framework::validate`: roles, framework id and failover timeout.
pub(super) fn validate_framework_info(info: &FrameworkInfo) -> Result<(), String> {
    let multi_role = has_capability(info, Capability::MultiRole);
    #[allow(deprecated)]
    let has_role = info.role.is_some();
    if multi_role {
        if has_role {
            return Err(
                "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        let mut duplicates = BTreeSet::new();
        for role in &info.roles {
            if !seen.insert(role) {
                duplicates.insert(role.clone());
            }
        }
        if !duplicates.is_empty() {
            return Err(format!(
                "'FrameworkInfo.roles' contains duplicate items: {}",
                stringify_set(&duplicates)
            ));
        }
        for role in &info.roles {
            validate_role(role)
                .map_err(|e| format!("'FrameworkInfo.roles' contains invalid role: {e}"))?;
        }
    } else {
        if !info.roles.is_empty() {
            return Err(
                "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
                    .into(),
            );
        }
        #[allow(deprecated)]
        validate_role(info.role())
            .map_err(|e| format!("'FrameworkInfo.role' is not a valid role: {e}"))?;
    }

    if let Some(id) = &info.id
        && !id.value.is_empty()
    {
        validate_id(&id.value)?;
    }

    for filters in info.offer_filters.values() {
        for qs in filters
            .min_allocatable_resources
            .iter()
            .flat_map(|m| &m.quantities)
        {
            if qs.quantities.is_empty() {
                return Err("Resource quantities must contain at least one quantity".into());
            }
            for (name, q) in &qs.quantities {
                let v = q.value;
                let problem = if v.is_infinite() {
                    Some("Infinite values not supported")
                } else if v.is_nan() {
                    Some("NaN not supported")
                } else if v.is_subnormal() {
                    Some("Subnormal values not supported")
                } else if v < 0.0 {
                    Some("Negative values not supported")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(format!("Invalid resource quantity for '{name}': {problem}"));
                }
            }
        }
    }

    let timeout = info.failover_timeout();
    if !timeout.is_finite() || timeout.abs() * 1e9 > i64::MAX as f64 {
        return Err(format!(
            "The framework failover_timeout ({timeout}) is invalid"
        ));
    }
    Ok(())
}

/// `validateSuppressedRoles`.
pub(super) fn validate_suppressed_roles(
    roles: &BTreeSet<String>,
    suppressed: &[String],
) -> Result<(), String> {
    let invalid: BTreeSet<String> = suppressed
        .iter()
        .filter(|r| !roles.contains(*r))
        .cloned()
        .collect();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Suppressed roles {} are not contained in the set of roles",
            stringify_set(&invalid)
        ))
    }
}

/// `validateOfferConstraintsRoles` and `OfferConstraintsFilter::create`: constraints only for
/// the framework's roles, no empty groups, known selectors and predicates. Regular expressions
/// are accepted only when they are plain text (matched as such): this master has no regex
/// engine.
pub(super) fn validate_offer_constraints(
    roles: &BTreeSet<String>,
    constraints: &scheduler::OfferConstraints,
) -> Result<(), String> {
    use scheduler::attribute_constraint::selector::PseudoattributeType;
    for (role, rc) in &constraints.role_constraints {
        if !roles.contains(role) {
            return Err(format!(
                "Offer constraints specify `role_constraints` for a role '{role}'not contained \
                 in the set of roles"
            ));
        }
        let invalid = |e: String| format!("Offer constraints are not valid: {e}");
        if rc.groups.is_empty() {
            return Err(invalid(format!(
                "'OfferConstraints::role_constraints' has an empty 'RoleConstraints::groups' \
                 for role {role}"
            )));
        }
        for group in &rc.groups {
            if group.attribute_constraints.is_empty() {
                return Err(invalid(format!(
                    "'OfferConstraints::RoleConstraints::groups' for role {role}contains an \
                     empty RoleConstraints::Group"
                )));
            }
            for c in &group.attribute_constraints {
                let sel = &c.selector;
                match (sel.pseudoattribute_type, &sel.attribute_name) {
                    (Some(t), None) => {
                        if PseudoattributeType::try_from(t).unwrap_or(PseudoattributeType::Unknown)
                            == PseudoattributeType::Unknown
                        {
                            return Err(invalid("Unknown pseudoattribute type".into()));
                        }
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err(invalid(
                            "Exactly one of 'AttributeConstraint::Selector::name' or \
                             'AttributeConstraint::Selector::pseudoattribute_type' must be set"
                                .into(),
                        ));
                    }
                }
                let p = &c.predicate;
                let regex = p
                    .text_matches
                    .as_ref()
                    .map(|m| &m.regex)
                    .or(p.text_not_matches.as_ref().map(|m| &m.regex));
                if let Some(regex) = regex
                    && regex.contains(|ch: char| "\\.+*?()|[]{}^$".contains(ch))
                {
                    return Err(invalid(format!(
                        "regular expression '{regex}' is not supported by this master (only \
                         plain text is)"
                    )));
                }
                let set = [
                    p.exists.is_some(),
                    p.not_exists.is_some(),
                    p.text_equals.is_some(),
                    p.text_not_equals.is_some(),
                    p.text_matches.is_some(),
                    p.text_not_matches.is_some(),
                ];
                if set.iter().filter(|x| **x).count() != 1 {
                    return Err(invalid("Unknown predicate type".into()));
                }
            }
        }
    }
    Ok(())
}

/// `OfferConstraintsFilter::isAgentExcluded`: an agent is offered to `role` only if some group
/// of the role's constraints has all its constraints true for the agent.
pub(super) fn agent_excluded(
    constraints: Option<&scheduler::OfferConstraints>,
    role: &str,
    agent: &v1::AgentInfo,
) -> bool {
    use scheduler::attribute_constraint::selector::PseudoattributeType;
    let Some(rc) = constraints.and_then(|c| c.role_constraints.get(role)) else {
        return false;
    };
    /// What a selector finds on the agent.
    enum Found<'a> {
        Nothing,
        Text(&'a str),
        Attribute(&'a v1::Attribute),
    }
    let evaluate = |c: &scheduler::AttributeConstraint| {
        let fault = agent.domain.as_ref().and_then(|d| d.fault_domain.as_ref());
        let found = match (&c.selector.attribute_name, c.selector.pseudoattribute_type) {
            (Some(name), _) => agent
                .attributes
                .iter()
                .find(|a| a.name == *name)
                .map_or(Found::Nothing, Found::Attribute),
            (None, Some(t)) => match PseudoattributeType::try_from(t) {
                Ok(PseudoattributeType::Hostname) => Found::Text(&agent.hostname),
                Ok(PseudoattributeType::Region) => {
                    fault.map_or(Found::Nothing, |f| Found::Text(&f.region.name))
                }
                Ok(PseudoattributeType::Zone) => {
                    fault.map_or(Found::Nothing, |f| Found::Text(&f.zone.name))
                }
                _ => Found::Nothing,
            },
            (None, None) => Found::Nothing,
        };
        let p = &c.predicate;
        // Non-TEXT attributes satisfy every text predicate, as in Mesos.
        let text = |want: &str, equal: bool| match &found {
            Found::Nothing => !equal,
            Found::Text(s) => (*s == want) == equal,
            Found::Attribute(a) => match &a.text {
                Some(t) if a.r#type == v1::value::Type::Text as i32 => (t.value == want) == equal,
                _ => true,
            },
        };
        if p.exists.is_some() {
            !matches!(found, Found::Nothing)
        } else if p.not_exists.is_some() {
            matches!(found, Found::Nothing)
        } else if let Some(e) = &p.text_equals {
            text(&e.value, true)
        } else if let Some(e) = &p.text_not_equals {
            text(&e.value, false)
        } else if let Some(m) = &p.text_matches {
            text(&m.regex, true)
        } else if let Some(m) = &p.text_not_matches {
            text(&m.regex, false)
        } else {
            true
        }
    };
    !rc.groups
        .iter()
        .any(|g| g.attribute_constraints.iter().all(&evaluate))
}

/// `Resources::validate`, the parts that matter here: each resource's value matches its type
/// and is a valid amount.
pub(super) fn check_resources(resources: &[v1::Resource]) -> Result<(), String> {
    use v1::value::Type;
    for r in resources {
        if r.name.is_empty() {
            return Err("Empty resource name".into());
        }
        let ok = match Type::try_from(r.r#type) {
            Ok(Type::Scalar) => r
                .scalar
                .as_ref()
                .is_some_and(|s| s.value.is_finite() && s.value >= 0.0),
            Ok(Type::Ranges) => r
                .ranges
                .as_ref()
                .is_some_and(|rs| rs.range.iter().all(|x| x.begin <= x.end)),
            Ok(Type::Set) => r.set.is_some(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "Invalid resource '{}': bad value for its type",
                r.name
            ));
        }
    }
    Ok(())
}

/// `validateRevocableAndNonRevocableResources`.
fn check_revocable(resources: &[v1::Resource]) -> Result<(), String> {
    for r in resources {
        let mixed = resources
            .iter()
            .any(|o| o.name == r.name && o.revocable.is_some() != r.revocable.is_some());
        if mixed {
            return Err(format!(
                "Cannot use both revocable and non-revocable '{}' at the same time",
                r.name
            ));
        }
    }
    Ok(())
}

/// `detectOverlappingSetAndRangeResources`: whether ranges or sets of the same name overlap
/// between the parts (the sum's size is less than the sum of the sizes).
fn overlaps(parts: &[&Resources]) -> bool {
    let size = |r: &Resources, name: &str| -> u64 {
        r.ranges(name).iter().map(|(b, e)| e - b + 1).sum::<u64>() + r.set(name).len() as u64
    };
    let mut all = Resources::new();
    let mut names = BTreeSet::new();
    for p in parts {
        all.add(p);
        names.extend(p.as_slice().iter().map(|r| r.name.clone()));
    }
    names
        .iter()
        .any(|n| parts.iter().map(|p| size(p, n)).sum::<u64>() != size(&all, n))
}

/// What task validation needs to know about the master's state.
pub(super) struct TaskContext<'a> {
    pub(super) framework_id: &'a v1::FrameworkId,
    /// Whether the framework already has a live task with this id.
    pub(super) task_exists: &'a dyn Fn(&str) -> bool,
    pub(super) agent_id: &'a v1::AgentId,
    /// The framework's executor with this id on the agent, if it is running.
    pub(super) executor: &'a dyn Fn(&str) -> Option<ExecutorInfo>,
}

/// Checks on a task common to LAUNCH and LAUNCH_GROUP (`task::internal::validateTask`).
fn validate_task_fields(task: &TaskInfo, ctx: &TaskContext<'_>) -> Result<(), String> {
    validate_id(&task.task_id.value)?;
    if (ctx.task_exists)(&task.task_id.value) {
        return Err(format!("Task has duplicate ID: {}", task.task_id.value));
    }
    if task.agent_id != *ctx.agent_id {
        return Err(format!(
            "Task uses invalid agent {} while agent {} is expected",
            task.agent_id.value, ctx.agent_id.value
        ));
    }
    if let Some(grace) = task
        .kill_policy
        .as_ref()
        .and_then(|k| k.grace_period.as_ref())
        && grace.nanoseconds < 0
    {
        return Err("Task's 'kill_policy.grace_period' must be non-negative".into());
    }
    if let Some(max) = &task.max_completion_time
        && max.nanoseconds < 0
    {
        return Err("Task's `max_completion_time` must be non-negative".into());
    }
    if task.resources.is_empty() {
        return Err("Task uses no resources".into());
    }
    check_resources(&task.resources).map_err(|e| format!("Task uses invalid resources: {e}"))?;
    check_revocable(&task.resources)
        .map_err(|e| format!("Task mixes revocable and non-revocable resources: {e}"))?;
    if !task.limits.is_empty() {
        if task.limits.keys().any(|k| k != "cpus" && k != "mem") {
            return Err("Only cpus and mem may be included in a task's resource limits".into());
        }
        let requested = Resources::from_vec(task.resources.clone());
        if let Some(limit) = task.limits.get("cpus") {
            if !task.resources.iter().any(|r| r.name == "cpus") {
                return Err(
                    "When a CPU limit is specified, a CPU request must also be specified".into(),
                );
            }
            if limit.value < requested.scalar("cpus") {
                return Err(
                    "The cpu limit must be greater than or equal to the cpu request".into(),
                );
            }
        }
        if let Some(limit) = task.limits.get("mem") {
            if !task.resources.iter().any(|r| r.name == "mem") {
                return Err(
                    "When a memory limit is specified, a memory request must also be specified"
                        .into(),
                );
            }
            if limit.value.is_finite() && limit.value < requested.scalar("mem") {
                return Err(
                    "The memory limit must be greater than or equal to the memory request".into(),
                );
            }
        }
    }
    Ok(())
}

/// `executor::validate` plus the framework id and compatibility checks of
/// `executor::internal::validate`.
fn validate_executor_info(executor: &ExecutorInfo, ctx: &TaskContext<'_>) -> Result<(), String> {
    match executor
        .r#type
        .and_then(|t| executor_info::Type::try_from(t).ok())
    {
        Some(executor_info::Type::Default) if executor.command.is_some() => {
            return Err("'ExecutorInfo.command' must not be set for 'DEFAULT' executor".into());
        }
        Some(executor_info::Type::Custom) if executor.command.is_none() => {
            return Err("'ExecutorInfo.command' must be set for 'CUSTOM' executor".into());
        }
        _ => {}
    }
    validate_id(&executor.executor_id.value)?;
    if executor
        .shutdown_grace_period
        .as_ref()
        .is_some_and(|d| d.nanoseconds < 0)
    {
        return Err("ExecutorInfo's 'shutdown_grace_period' must be non-negative".into());
    }
    let Some(framework_id) = &executor.framework_id else {
        return Err("'ExecutorInfo.framework_id' must be set".into());
    };
    if framework_id != ctx.framework_id {
        return Err(format!(
            "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {})",
            framework_id.value, ctx.framework_id.value
        ));
    }
    check_resources(&executor.resources)
        .map_err(|e| format!("Executor uses invalid resources: {e}"))?;
    check_revocable(&executor.resources)
        .map_err(|e| format!("Executor mixes revocable and non-revocable resources: {e}"))?;
    if let Some(existing) = (ctx.executor)(&executor.executor_id.value)
        && existing != *executor
    {
        return Err(format!(
            "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID.\n\
             ------------------------------------------------------------\n\
             Existing ExecutorInfo:\n{}\n\
             ------------------------------------------------------------\n\
             ExecutorInfo:\n{}\n\
             ------------------------------------------------------------\n",
            mesokit_proto::json::encode_string(&existing),
            mesokit_proto::json::encode_string(executor)
        ));
    }
    Ok(())
}

/// `task::validate` for a LAUNCH operation. `offered` is what is left of the accepted offers
/// (allocated to the offers' role, as the task's resources are by now). Returns what the task
/// (and its executor, if that is not running yet) consumes.
pub(super) fn validate_task(
    task: &TaskInfo,
    ctx: &TaskContext<'_>,
    offered: &Resources,
) -> Result<Resources, String> {
    validate_task_fields(task, ctx)?;

    if task.executor.is_some() == task.command.is_some() {
        return Err(
            "Task should have at least one (but not both) of CommandInfo or \
                    ExecutorInfo present"
                .into(),
        );
    }
    let mut total = Resources::from_vec(task.resources.clone());
    if let Some(executor) = &task.executor {
        validate_executor_info(executor, ctx)?;
        if executor
            .r#type
            .is_some_and(|t| t != executor_info::Type::Custom as i32)
        {
            return Err("'ExecutorInfo.type' must be 'CUSTOM'".into());
        }
        if executor.command.is_none() {
            return Err("'ExecutorInfo.command' must be set".into());
        }
        let executor_resources = Resources::from_vec(executor.resources.clone());
        if overlaps(&[&total, &executor_resources]) {
            return Err(format!(
                "There are overlapping resources in the task resources {total} and executor \
                 resources {executor_resources}"
            ));
        }
        if (ctx.executor)(&executor.executor_id.value).is_none() {
            total.add(&executor_resources);
        }
    }
    if !offered.contains(&total) {
        return Err(format!(
            "Total resources {total} required by task and its executor is more than available \
             {offered}"
        ));
    }
    Ok(total)
}

/// `task::group::validate` for a LAUNCH_GROUP operation (each task's `executor` has already
/// been filled in from the group's). Returns what the group (and its executor, if new)
/// consumes.
pub(super) fn validate_task_group(
    group: &v1::TaskGroupInfo,
    executor: &ExecutorInfo,
    ctx: &TaskContext<'_>,
    offered: &Resources,
) -> Result<Resources, String> {
    let mut ids = BTreeSet::new();
    for task in &group.tasks {
        let mut check = || -> Result<(), String> {
            validate_task_fields(task, ctx)?;
            if !ids.insert(task.task_id.value.clone()) {
                return Err(format!("Task has duplicate ID: {}", task.task_id.value));
            }
            if task.executor.is_none() {
                return Err("'TaskInfo.executor' must be set".into());
            }
            Ok(())
        };
        check().map_err(|e| format!("Task '{}' is invalid: {e}", task.task_id.value))?;
    }

    validate_executor_info(executor, ctx)?;
    let Some(ty) = executor.r#type else {
        return Err("'ExecutorInfo.type' must be set".into());
    };
    if executor_info::Type::try_from(ty).unwrap_or(executor_info::Type::Unknown)
        == executor_info::Type::Unknown
    {
        return Err("Unknown executor type".into());
    }
    for task in &group.tasks {
        if task.executor.as_deref().is_some_and(|e| e != executor) {
            return Err(format!(
                "The `ExecutorInfo` of task '{}' is different from executor '{}'",
                task.task_id.value, executor.executor_id.value
            ));
        }
    }
    let executor_resources = Resources::from_vec(executor.resources.clone());
    let has = |name: &str| executor.resources.iter().any(|r| r.name == name);
    let eid = &executor.executor_id.value;
    if !has("cpus") || executor_resources.scalar("cpus") < MIN_CPUS {
        let cpus = if has("cpus") {
            executor_resources.scalar("cpus").to_string()
        } else {
            "None".into()
        };
        return Err(format!(
            "Executor '{eid}' uses less CPUs ({cpus}) than the minimum required ({MIN_CPUS})"
        ));
    }
    if !has("mem") || executor_resources.scalar("mem") < MIN_MEM_MB {
        let mem = if has("mem") {
            format!("{}MB", executor_resources.scalar("mem"))
        } else {
            "None".into()
        };
        return Err(format!(
            "Executor '{eid}' uses less memory ({mem}) than the minimum required ({MIN_MEM_MB}MB)"
        ));
    }
    if !has("disk") {
        return Err(format!("Executor '{eid}' uses no disk"));
    }

    let task_resources: Vec<Resources> = group
        .tasks
        .iter()
        .map(|t| Resources::from_vec(t.resources.clone()))
        .collect();
    let mut parts: Vec<&Resources> = task_resources.iter().collect();
    parts.push(&executor_resources);
    if overlaps(&parts) {
        let tasks: Vec<String> = task_resources.iter().map(ToString::to_string).collect();
        return Err(format!(
            "There are overlapping resources in the task group's task resources [ {} ] and/or \
             executor resources {executor_resources}",
            tasks.join(", ")
        ));
    }
    let mut total = Resources::new();
    for r in &task_resources {
        total.add(r);
    }
    if (ctx.executor)(eid).is_none() {
        total.add(&executor_resources);
    }
    if !offered.contains(&total) {
        return Err(format!(
            "Total resources {total} required by task group and its executor are more than \
             available {offered}"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_mesos_rules() {
        assert!(validate_id("web-1.a_b").is_ok());
        assert_eq!(validate_id("").unwrap_err(), "ID must not be empty");
        assert_eq!(validate_id("..").unwrap_err(), "'..' is disallowed");
        assert_eq!(
            validate_id("a/b").unwrap_err(),
            "'a/b' contains invalid characters"
        );
        assert!(validate_id(&"x".repeat(256)).is_err());
    }

    #[test]
    fn roles_follow_mesos_rules() {
        assert!(validate_role("*").is_ok());
        assert!(validate_role("dev/web").is_ok());
        assert!(validate_role("/dev").is_err());
        assert!(validate_role("a b").is_err());
        assert!(validate_role("-x").is_err());
        assert!(validate_role("").is_err());
    }

    #[test]
    fn overlapping_ranges_are_detected() {
        let a = Resources::parse("ports:[1-5]").unwrap();
        let b = Resources::parse("ports:[5-6]").unwrap();
        let c = Resources::parse("ports:[7-8];cpus:1").unwrap();
        assert!(overlaps(&[&a, &b]));
        assert!(!overlaps(&[&a, &c]));
    }

    #[test]
    fn resource_values_must_match_their_type() {
        let mut r = mesokit_proto::helpers::cpus(1.0);
        assert!(check_resources(std::slice::from_ref(&r)).is_ok());
        r.scalar = Some(v1::value::Scalar { value: -1.0 });
        assert!(check_resources(&[r]).is_err());
        let mut revocable = mesokit_proto::helpers::cpus(1.0);
        revocable.revocable = Some(Default::default());
        assert_eq!(
            check_revocable(&[mesokit_proto::helpers::cpus(1.0), revocable]).unwrap_err(),
            "Cannot use both revocable and non-revocable 'cpus' at the same time"
        );
    }

    #[test]
    fn call_validation_texts() {
        let mut call = scheduler::Call::default();
        assert_eq!(
            validate_call(&call).unwrap_err(),
            "Expecting 'type' to be present"
        );
        call.r#type = Some(call::Type::Teardown as i32);
        assert_eq!(
            validate_call(&call).unwrap_err(),
            "Expecting 'framework_id' to be present"
        );
        call.framework_id = Some(v1::FrameworkId { value: "f".into() });
        assert!(validate_call(&call).is_ok());
        call.r#type = Some(call::Type::Accept as i32);
        assert_eq!(
            validate_call(&call).unwrap_err(),
            "Expecting 'accept' to be present"
        );
    }
}
