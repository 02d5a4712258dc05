//! The v1 operator API's read side (`GET_STATE`, `GET_AGENTS`, `GET_FRAMEWORKS`,
//! `GET_EXECUTORS`, `GET_TASKS`, `GET_MASTER`): the same bookkeeping as the v0 JSON, as
//! `mesos.v1.master.Response` payloads (`src/master/http.cpp`'s `_getState` and friends).

use mesokit_proto::v1::{
    self, agent_info,
    master::response::{
        GetAgents, GetExecutors, GetFrameworks, GetMaster, GetState, GetTasks, get_agents,
        get_executors, get_frameworks,
    },
};

use super::core::{Framework, MESOS_VERSION, Master};

fn time_info(epoch_secs: f64) -> v1::TimeInfo {
    v1::TimeInfo {
        nanoseconds: (epoch_secs * 1e9) as i64,
    }
}

impl Master {
    /// `GET_AGENTS`.
    pub fn get_agents(&self) -> GetAgents {
        let capabilities = [
            agent_info::capability::Type::MultiRole,
            agent_info::capability::Type::HierarchicalRole,
            agent_info::capability::Type::ReservationRefinement,
        ]
        .map(|t| agent_info::Capability {
            r#type: Some(t as i32),
        });
        GetAgents {
            agents: self
                .agents
                .values()
                .map(|a| get_agents::Agent {
                    agent_info: a.info.clone(),
                    active: a.disconnected_at.is_none(),
                    deactivated: Some(false),
                    version: MESOS_VERSION.into(),
                    pid: Some(a.pid.clone()),
                    registered_time: Some(time_info(a.registered_time)),
                    reregistered_time: None,
                    total_resources: a.total.as_slice().to_vec(),
                    allocated_resources: a.used.as_slice().to_vec(),
                    offered_resources: a.offered.as_slice().to_vec(),
                    capabilities: capabilities.to_vec(),
                    resource_providers: Vec::new(),
                    drain_info: None,
                    estimated_drain_start_time: None,
                })
                .collect(),
            recovered_agents: Vec::new(),
        }
    }

    fn framework_v1(&self, f: &Framework) -> get_frameworks::Framework {
        get_frameworks::Framework {
            framework_info: f.info.clone(),
            active: f.active,
            connected: f.conn.is_some(),
            recovered: false,
            registered_time: Some(time_info(f.registered_time)),
            reregistered_time: f.reregistered_time.map(time_info),
            unregistered_time: (f.unregistered_time > 0.0).then(|| time_info(f.unregistered_time)),
            offers: self
                .offers
                .values()
                .filter(|o| o.offer.framework_id == f.id)
                .map(|o| o.offer.clone())
                .collect(),
            inverse_offers: Vec::new(),
            allocated_resources: f.used.as_slice().to_vec(),
            offered_resources: f.offered.as_slice().to_vec(),
            offer_constraints: f.offer_constraints.clone(),
        }
    }

    /// `GET_FRAMEWORKS`.
    pub fn get_frameworks(&self) -> GetFrameworks {
        #[allow(deprecated)]
        GetFrameworks {
            frameworks: self
                .frameworks
                .values()
                .map(|f| self.framework_v1(f))
                .collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| self.framework_v1(f))
                .collect(),
            recovered_frameworks: Vec::new(),
        }
    }

    /// `GET_EXECUTORS`.
    pub fn get_executors(&self) -> GetExecutors {
        #[allow(deprecated)]
        GetExecutors {
            executors: self
                .frameworks
                .values()
                .flat_map(|f| &f.executors)
                .filter_map(|((agent, _), e)| {
                    let agent_id = self.agents.get(agent)?.id.clone();
                    Some(get_executors::Executor {
                        executor_info: e.clone(),
                        agent_id,
                    })
                })
                .collect(),
            orphan_executors: Vec::new(),
        }
    }

    /// `GET_TASKS`.
    pub fn get_tasks(&self) -> GetTasks {
        let all = || self.frameworks.values().chain(&self.completed_frameworks);
        #[allow(deprecated)]
        GetTasks {
            pending_tasks: Vec::new(),
            tasks: self
                .frameworks
                .values()
                .flat_map(|f| f.tasks.values().cloned())
                .collect(),
            unreachable_tasks: Vec::new(),
            completed_tasks: all()
                .flat_map(|f| f.completed_tasks.iter().cloned())
                .collect(),
            orphan_tasks: Vec::new(),
        }
    }

    /// `GET_STATE`: tasks, executors, frameworks and agents.
    pub fn get_state(&self) -> GetState {
        GetState {
            get_tasks: Some(self.get_tasks()),
            get_executors: Some(self.get_executors()),
            get_frameworks: Some(self.get_frameworks()),
            get_agents: Some(self.get_agents()),
        }
    }

    /// `GET_MASTER`.
    pub fn get_master(&self) -> GetMaster {
        GetMaster {
            master_info: Some(Box::new(self.master_info())),
            start_time: Some(self.wall_base),
            elected_time: Some(self.wall_base),
        }
    }
}
