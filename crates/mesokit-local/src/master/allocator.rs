//! Offers: the allocation cycle (each agent's free resources to one framework role, in DRF
//! order, as Mesos's hierarchical allocator does for one machine), refusal filters, declines,
//! rescinds, and the shape of an offer as each framework sees it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesokit_proto::resources::Resources;
use mesokit_proto::v1::{
    self,
    framework_info::capability::Type as Capability,
    resource,
    scheduler::{self, call, event},
};
use tracing::{debug, info};

use super::core::{Filter, Framework, MAX_REFUSE, Master, OfferEntry, event};
use super::validation;

/// The resources whose shares DRF compares.
const SHARE_RESOURCES: [&str; 3] = ["cpus", "mem", "disk"];

impl Master {
    /// Removes an outstanding offer and returns its resources to the agent's pool, with a RESCIND
    /// to the framework if `rescind`, and a refusal filter if `refuse` is a positive duration.
    pub(super) fn remove_offer(
        &mut self,
        now: Instant,
        offer_id: &str,
        rescind: bool,
        refuse: Option<Duration>,
    ) -> Option<v1::Offer> {
        let entry = self.offers.remove(offer_id)?;
        let offer = entry.offer;
        let resources = Resources::from_vec(offer.resources.clone());
        if let Some(agent) = self.agents.get_mut(&offer.agent_id.value) {
            agent.offered.subtract(&resources);
        }
        let fid = offer.framework_id.value.clone();
        if let Some(framework) = self.frameworks.get_mut(&fid) {
            framework.offered.subtract(&resources);
            if let Some(refuse) = refuse.filter(|d| !d.is_zero()) {
                let mut refused = resources.clone();
                refused.unallocate();
                // A filter lasts at least one allocation interval.
                let refuse = refuse.max(self.config.allocation_interval);
                framework.filters.push(Filter {
                    role: offer
                        .allocation_info
                        .as_ref()
                        .and_then(|a| a.role.clone())
                        .unwrap_or_default(),
                    agent: offer.agent_id.value.clone(),
                    resources: refused,
                    expires: now + refuse,
                });
            }
        }
        if rescind {
            self.counters.offers_rescinded += 1;
            let rescind = scheduler::Event {
                rescind: Some(event::Rescind {
                    offer_id: offer.id.clone(),
                }),
                ..event(event::Type::Rescind)
            };
            self.send(&fid, rescind);
        }
        Some(offer)
    }

    /// `Filters.refuse_seconds` as the allocator reads it: default 5 s, negative → 5 s, capped
    /// at 365 days, 0 → no filter.
    pub(super) fn refuse_duration(filters: Option<&v1::Filters>) -> Duration {
        let secs = filters.map_or(5.0, |f| f.refuse_seconds());
        if secs.is_nan() || secs < 0.0 {
            Duration::from_secs(5)
        } else if secs > MAX_REFUSE.as_secs_f64() {
            MAX_REFUSE
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    pub(super) fn decline(&mut self, now: Instant, fid: &str, decline: call::Decline) {
        let refuse = Self::refuse_duration(decline.filters.as_ref());
        for id in decline.offer_ids {
            match self.offers.get(&id.value) {
                Some(o) if o.offer.framework_id.value == fid => {
                    self.remove_offer(now, &id.value, false, Some(refuse));
                    self.counters.offers_declined += 1;
                }
                _ => {
                    debug!(
                        framework_id = fid,
                        offer_id = %id.value,
                        "ignoring decline of an unknown offer",
                    )
                }
            }
        }
    }

    /// Whether `r` is worth an offer to `role` of `framework`: it reaches one of the
    /// framework's `offer_filters[role].min_allocatable_resources` quantities if it set some,
    /// else `--min_allocatable_resources` (`cpus:0.01|mem:32`: either will do).
    fn allocatable(&self, r: &Resources, framework: &Framework, role: &str) -> bool {
        if r.is_empty() {
            return false;
        }
        let amount = |name: &str| {
            let ranges = r.ranges(name);
            if ranges.is_empty() {
                r.scalar(name)
            } else {
                ranges.iter().map(|(b, e)| (e - b + 1) as f64).sum()
            }
        };
        if let Some(min) = framework
            .info
            .offer_filters
            .get(role)
            .and_then(|f| f.min_allocatable_resources.as_ref())
        {
            return min.quantities.is_empty()
                || min.quantities.iter().any(|qs| {
                    qs.quantities
                        .iter()
                        .all(|(name, q)| amount(name) >= q.value)
                });
        }
        let c = &self.config;
        amount("cpus") >= c.min_allocatable_cpus || amount("mem") >= c.min_allocatable_mem
    }

    /// The dominant share of a framework (DRF): its largest fraction of the cluster's cpus,
    /// mem or disk, counting what it uses and what it is offered.
    fn dominant_share(framework: &Framework, cluster: &[f64; 3]) -> f64 {
        let mut mine = framework.used.clone();
        mine.add(&framework.offered);
        SHARE_RESOURCES
            .iter()
            .zip(cluster)
            .map(|(n, t)| if *t > 0.0 { mine.scalar(n) / t } else { 0.0 })
            .fold(0.0, f64::max)
    }

    /// One allocation cycle: each agent's free resources go, as one offer, to the first
    /// eligible (framework, role) in DRF order (fewest resources first). One OFFERS event per
    /// framework.
    pub(super) fn allocate(&mut self, now: Instant) {
        let mut total = Resources::new();
        for agent in self.agents.values() {
            total.add(&agent.total);
        }
        let cluster = SHARE_RESOURCES.map(|n| total.scalar(n));
        for framework in self.frameworks.values_mut() {
            framework.filters.retain(|f| f.expires > now);
        }
        let mut made: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // DRF order: the framework with the smallest dominant share first (ties by id). Shares
        // are computed once per cycle and updated as offers are made.
        let mut order: Vec<(f64, String)> = self
            .frameworks
            .values()
            .filter(|f| f.active && f.conn.is_some())
            .map(|f| (Self::dominant_share(f, &cluster), f.id.value.clone()))
            .collect();
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        for agent_id in agent_ids {
            let agent = &self.agents[&agent_id];
            if agent.disconnected_at.is_some() {
                continue;
            }
            let available = agent.available();
            if available.is_empty() {
                continue;
            }
            let gpu_agent = agent.total.scalar("gpus") > 0.0;
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let chosen = order.iter().enumerate().find_map(|(i, (_, fid))| {
                let framework = &self.frameworks[fid];
                if gpu_agent && !framework.capable(Capability::GpuResources) {
                    return None;
                }
                framework.roles().into_iter().find_map(|role| {
                    if framework.suppressed.contains(&role)
                        || validation::agent_excluded(
                            framework.offer_constraints.as_ref(),
                            &role,
                            &agent.info,
                        )
                    {
                        return None;
                    }
                    let offerable = available.filter(|r| offerable_to(r, &role));
                    if !self.allocatable(&offerable, framework, &role) {
                        return None;
                    }
                    let refused = framework.filters.iter().any(|f| {
                        f.role == role && f.agent == agent_id && f.resources.contains(&offerable)
                    });
                    (!refused).then_some((i, role, offerable))
                })
            });
            let Some((i, role, resources)) = chosen else {
                continue;
            };
            let fid = order[i].1.clone();
            let offer_id = self.make_offer(now, &fid, &agent_id, &role, resources);
            order[i].0 = Self::dominant_share(&self.frameworks[&fid], &cluster);
            made.entry(fid).or_default().push(offer_id);
        }
        for (fid, offer_ids) in made {
            let framework = &self.frameworks[&fid];
            let offers: Vec<v1::Offer> = offer_ids
                .iter()
                .map(|id| offer_for(framework, &self.offers[id].offer))
                .collect();
            self.counters.offers_sent += offers.len() as u64;
            info!(framework_id = %fid, offers = ?offer_ids, "sending offers");
            let offers_event = scheduler::Event {
                offers: Some(event::Offers { offers }),
                ..event(event::Type::Offers)
            };
            self.send(&fid, offers_event);
        }
    }

    pub(super) fn make_offer(
        &mut self,
        now: Instant,
        fid: &str,
        agent_id: &str,
        role: &str,
        mut resources: Resources,
    ) -> String {
        resources.allocate(role);
        let id = format!("{}-O{}", self.config.master_id, self.next_offer);
        self.next_offer += 1;
        let framework = self.frameworks.get_mut(fid).expect("present");
        framework.offered.add(&resources);
        let executor_ids: Vec<v1::ExecutorId> = framework
            .executors
            .keys()
            .filter(|(a, _)| a == agent_id)
            .map(|(_, e)| v1::ExecutorId { value: e.clone() })
            .collect();
        let framework_id = framework.id.clone();
        let agent = self.agents.get_mut(agent_id).expect("present");
        agent.offered.add(&resources);
        let offer = v1::Offer {
            id: v1::OfferId { value: id.clone() },
            framework_id,
            agent_id: agent.id.clone(),
            hostname: agent.info.hostname.clone(),
            url: Some(v1::Url {
                scheme: "http".into(),
                address: v1::Address {
                    hostname: Some(agent.info.hostname.clone()),
                    ip: Some(agent.ip.clone()),
                    port: agent.port,
                },
                path: Some(format!(
                    "/{}",
                    agent.pid.split('@').next().unwrap_or("slave(1)")
                )),
                ..Default::default()
            }),
            domain: agent.info.domain.clone(),
            resources: resources.into_vec(),
            attributes: agent.info.attributes.clone(),
            executor_ids,
            unavailability: None,
            allocation_info: Some(resource::AllocationInfo {
                role: Some(role.to_owned()),
            }),
        };
        self.offers.insert(
            id.clone(),
            OfferEntry {
                offer,
                expires: self.config.offer_timeout.map(|t| now + t),
            },
        );
        id
    }
}

/// Whether an agent resource may be offered to `role`: unreserved, or reserved to that role.
fn offerable_to(r: &v1::Resource, role: &str) -> bool {
    #[allow(deprecated)]
    let reserved = match (r.reservations.last(), r.role.as_deref()) {
        (Some(res), _) => res.role.as_deref(),
        (None, Some(role)) if role != "*" => Some(role),
        _ => None,
    };
    reserved.is_none_or(|reserved| reserved == role)
}

/// An offer as a framework sees it: `allocation_info` only for MULTI_ROLE frameworks, and the
/// pre-refinement resource format (`role` set explicitly) for frameworks without
/// RESERVATION_REFINEMENT.
pub(super) fn offer_for(framework: &Framework, offer: &v1::Offer) -> v1::Offer {
    let mut offer = offer.clone();
    if !framework.capable(Capability::MultiRole) {
        offer.allocation_info = None;
        for r in &mut offer.resources {
            r.allocation_info = None;
        }
    }
    if !framework.capable(Capability::ReservationRefinement) {
        for r in &mut offer.resources {
            downgrade(r);
        }
    }
    offer
}

/// Post- to pre-reservation-refinement format: `role` is "*" or the (single) reservation's.
pub(super) fn downgrade(r: &mut v1::Resource) {
    let reservations = std::mem::take(&mut r.reservations);
    #[allow(deprecated)]
    match reservations.last() {
        None => {
            if r.role.is_none() {
                r.role = Some("*".into());
            }
        }
        Some(last) => {
            r.role = last.role.clone();
            // Only dynamic reservations have a `reservation` (principal, labels).
            if last.r#type == Some(resource::reservation_info::Type::Dynamic as i32) {
                r.reservation = Some(Box::new(resource::ReservationInfo {
                    principal: last.principal.clone(),
                    labels: last.labels.clone(),
                    ..Default::default()
                }));
            }
        }
    }
}
