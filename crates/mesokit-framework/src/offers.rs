//! Carving tasks out of an offer with exact resource maths.
//!
//! An [`OfferPool`] holds what is still free in one offer: scalar amounts in Mesos's fixed point
//! (thousandths) and port ranges, each remembered with the offer entry it came from. Taking
//! resources for a task copies that entry (role, reservations, `allocation_info`) and sets the
//! amount, so a task on reserved or MULTI_ROLE resources is accepted by the master as is.
//! Entries a plain task cannot use (revocable, shared, persistent volumes, mount disks,
//! resource-provider resources, unknown names) are left alone.

use std::borrow::Cow;

use mesokit_proto::resources::{from_fixed, to_fixed};
use mesokit_proto::v1::{Offer, Resource, Value, value};

/// What one task needs, in fixed point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Scalars in thousandths: cpus, mem, disk, gpus.
    pub scalars: [i64; 4],
    /// Ports from anywhere in the offer.
    pub dynamic_ports: u32,
    /// Ports that must be exactly these.
    pub fixed_ports: Vec<u64>,
}

const SCALARS: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

impl Needs {
    /// From amounts as Mesos writes them.
    pub fn new(cpus: f64, mem: f64, disk: f64, gpus: f64, ports: u32, fixed: &[u64]) -> Needs {
        Needs {
            scalars: [
                to_fixed(cpus),
                to_fixed(mem),
                to_fixed(disk),
                to_fixed(gpus),
            ],
            dynamic_ports: ports,
            fixed_ports: fixed.to_vec(),
        }
    }
}

/// The free part of one offer.
#[derive(Debug)]
pub struct OfferPool<'a> {
    offer: &'a Offer,
    /// Per scalar kind: (entry index, free amount).
    scalars: [Vec<(usize, i64)>; 4],
    /// (entry index, free ranges sorted).
    ports: Vec<(usize, Vec<(u64, u64)>)>,
}

/// What was taken for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// Resource entries for `TaskInfo.resources`.
    pub resources: Vec<Resource>,
    /// Ports in the order asked: fixed ones first, then dynamic ones.
    pub ports: Vec<u64>,
}

fn usable(r: &Resource) -> bool {
    r.revocable.is_none()
        && r.shared.is_none()
        && r.provider_id.is_none()
        && r.disk
            .as_ref()
            .is_none_or(|d| d.persistence.is_none() && d.source.is_none() && d.volume.is_none())
}

impl<'a> OfferPool<'a> {
    /// The usable resources of `offer`.
    pub fn new(offer: &'a Offer) -> Self {
        let mut pool = OfferPool {
            offer,
            scalars: Default::default(),
            ports: Vec::new(),
        };
        for (i, r) in offer.resources.iter().enumerate() {
            if !usable(r) {
                continue;
            }
            if r.r#type == value::Type::Scalar as i32 {
                if let (Some(k), Some(s)) = (SCALARS.iter().position(|n| *n == r.name), &r.scalar) {
                    let amount = to_fixed(s.value);
                    if amount > 0 {
                        pool.scalars[k].push((i, amount));
                    }
                }
            } else if r.r#type == value::Type::Ranges as i32 && r.name == "ports" {
                if let Some(ranges) = &r.ranges {
                    let mut free: Vec<(u64, u64)> = ranges
                        .range
                        .iter()
                        .filter(|x| x.begin <= x.end)
                        .map(|x| (x.begin, x.end))
                        .collect();
                    free.sort_unstable();
                    pool.ports.push((i, free));
                }
            }
        }
        pool
    }

    /// The offer this pool came from.
    pub fn offer(&self) -> &'a Offer {
        self.offer
    }

    /// Free amount of a scalar kind (0 = cpus, 1 = mem, 2 = disk, 3 = gpus), fixed point.
    pub fn free(&self, kind: usize) -> i64 {
        self.scalars[kind].iter().map(|(_, a)| a).sum()
    }

    fn free_ports(&self) -> u64 {
        self.ports
            .iter()
            .flat_map(|(_, r)| r.iter())
            .map(|(b, e)| e - b + 1)
            .sum()
    }

    fn has_port(&self, p: u64) -> bool {
        self.ports
            .iter()
            .any(|(_, r)| r.iter().any(|&(b, e)| b <= p && p <= e))
    }

    /// Whether `needs` fits in what is left.
    pub fn fits(&self, needs: &Needs) -> bool {
        (0..4).all(|k| needs.scalars[k] == 0 || self.free(k) >= needs.scalars[k])
            && needs.fixed_ports.iter().all(|p| self.has_port(*p))
            && self.free_ports() >= needs.dynamic_ports as u64 + needs.fixed_ports.len() as u64
        // (a fixed port counted twice in the line above is impossible: has_port checked it)
    }

    /// Takes `needs` out of the pool, or returns `None` and leaves it unchanged.
    pub fn take(&mut self, needs: &Needs) -> Option<Taken> {
        if !self.fits(needs) {
            return None;
        }
        // One entry per scalar kind asked for and one for ports, unless an amount spans
        // entries (rare). Sized exactly: a `Resource` is 280 bytes, and spare capacity here
        // was a third of the memory of a 100k-task launch.
        let ports_wanted = needs.dynamic_ports > 0 || !needs.fixed_ports.is_empty();
        let mut resources = Vec::with_capacity(
            needs.scalars.iter().filter(|v| **v > 0).count() + usize::from(ports_wanted),
        );
        for k in 0..4 {
            let mut want = needs.scalars[k];
            for (idx, free) in self.scalars[k].iter_mut() {
                if want == 0 {
                    break;
                }
                let n = want.min(*free);
                if n == 0 {
                    continue;
                }
                *free -= n;
                want -= n;
                let mut r = carve(&self.offer.resources[*idx]);
                r.scalar = Some(value::Scalar {
                    value: from_fixed(n),
                });
                resources.push(r);
            }
            self.scalars[k].retain(|(_, free)| *free > 0);
        }
        // Ports: fixed first, then the lowest free ones.
        let mut ports: Vec<(usize, u64)> =
            Vec::with_capacity(needs.fixed_ports.len() + needs.dynamic_ports as usize);
        for &p in &needs.fixed_ports {
            let entry = self
                .ports
                .iter()
                .position(|(_, r)| r.iter().any(|&(b, e)| b <= p && p <= e))?;
            remove_port(&mut self.ports[entry].1, p);
            ports.push((entry, p));
        }
        for _ in 0..needs.dynamic_ports {
            let entry = self.ports.iter().position(|(_, r)| !r.is_empty())?;
            let p = self.ports[entry].1[0].0;
            remove_port(&mut self.ports[entry].1, p);
            ports.push((entry, p));
        }
        let order: Vec<u64> = ports.iter().map(|(_, p)| *p).collect();
        ports.sort_unstable();
        let mut i = 0;
        while i < ports.len() {
            let entry = ports[i].0;
            let mut ranges: Vec<value::Range> = Vec::new();
            while i < ports.len() && ports[i].0 == entry {
                let p = ports[i].1;
                match ranges.last_mut() {
                    Some(last) if last.end + 1 == p => last.end = p,
                    _ => ranges.push(value::Range { begin: p, end: p }),
                }
                i += 1;
            }
            let mut r = carve(&self.offer.resources[self.ports[entry].0]);
            r.ranges = Some(value::Ranges { range: ranges });
            resources.push(r);
        }
        Some(Taken {
            resources,
            ports: order,
        })
    }
}

/// A copy of an offer entry without its amount (scalar, ranges or set), for a part of it: the
/// role, reservations and allocation info go with the part; the offer's whole port list is
/// not copied only to be replaced.
// `role` is deprecated in Mesos, yet a part must keep it as the offer had it.
#[allow(deprecated)]
fn carve(r: &Resource) -> Resource {
    Resource {
        provider_id: r.provider_id.clone(),
        name: r.name.clone(),
        r#type: r.r#type,
        scalar: None,
        ranges: None,
        set: None,
        role: r.role.clone(),
        allocation_info: r.allocation_info.clone(),
        reservation: r.reservation.clone(),
        reservations: r.reservations.clone(),
        disk: r.disk.clone(),
        revocable: r.revocable,
        shared: r.shared,
    }
}

fn remove_port(ranges: &mut Vec<(u64, u64)>, p: u64) {
    if let Some(i) = ranges.iter().position(|&(b, e)| b <= p && p <= e) {
        let (b, e) = ranges[i];
        match (b == p, e == p) {
            (true, true) => {
                ranges.remove(i);
            }
            (true, false) => ranges[i].0 = p + 1,
            (false, true) => ranges[i].1 = p - 1,
            (false, false) => {
                ranges[i].1 = p - 1;
                ranges.insert(i + 1, (p + 1, e));
            }
        }
    }
}

/// The role an offer is allocated to (MULTI_ROLE), or `*`.
pub fn offer_role(offer: &Offer) -> &str {
    offer
        .allocation_info
        .as_ref()
        .and_then(|a| a.role.as_deref())
        .or_else(|| {
            offer
                .resources
                .first()
                .and_then(|r| r.allocation_info.as_ref())
                .and_then(|a| a.role.as_deref())
        })
        .unwrap_or("*")
}

/// An agent attribute's value as text, for constraints: text and scalars as written, ranges
/// as `[a-b,c-d]`, sets as `{a,b}`.
/// Borrowed for the hostname and text attributes (checked for every placement).
pub fn attribute_text<'a>(offer: &'a Offer, name: &str) -> Option<Cow<'a, str>> {
    if name == "hostname" {
        return Some(Cow::Borrowed(&offer.hostname));
    }
    let a = offer.attributes.iter().find(|a| a.name == name)?;
    if a.r#type == value::Type::Text as i32 {
        return Some(Cow::Borrowed(a.text.as_ref().map_or("", |t| &t.value)));
    }
    Some(Cow::Owned(value_text(
        a.r#type,
        a.scalar.as_ref(),
        a.ranges.as_ref(),
        a.set.as_ref(),
        a.text.as_ref(),
    )))
}

fn value_text(
    ty: i32,
    scalar: Option<&value::Scalar>,
    ranges: Option<&value::Ranges>,
    set: Option<&value::Set>,
    text: Option<&value::Text>,
) -> String {
    match value::Type::try_from(ty) {
        Ok(value::Type::Scalar) => scalar.map(|s| format!("{}", s.value)).unwrap_or_default(),
        Ok(value::Type::Ranges) => {
            let parts: Vec<String> = ranges
                .map(|r| {
                    r.range
                        .iter()
                        .map(|x| format!("{}-{}", x.begin, x.end))
                        .collect()
                })
                .unwrap_or_default();
            format!("[{}]", parts.join(","))
        }
        Ok(value::Type::Set) => {
            format!("{{{}}}", set.map(|s| s.item.join(",")).unwrap_or_default())
        }
        _ => text.map(|t| t.value.clone()).unwrap_or_default(),
    }
}

/// A Value of type SCALAR (for tests and builders).
pub fn scalar_value(v: f64) -> Value {
    Value {
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        ..Value::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesokit_proto::helpers;
    use mesokit_proto::v1::resource::{AllocationInfo, ReservationInfo, RevocableInfo};

    fn offer(resources: Vec<Resource>) -> Offer {
        Offer {
            hostname: "h1".into(),
            resources,
            ..Offer::default()
        }
    }

    fn role(mut r: Resource, role: &str) -> Resource {
        r.allocation_info = Some(AllocationInfo {
            role: Some(role.into()),
        });
        r
    }

    #[test]
    fn scalars_are_exact_and_keep_reservations() {
        let mut reserved = helpers::cpus(0.3);
        reserved.reservations.push(ReservationInfo {
            role: Some("web".into()),
            ..ReservationInfo::default()
        });
        let o = offer(vec![
            role(reserved, "web"),
            role(helpers::cpus(0.3), "web"),
            role(helpers::mem(100.0), "web"),
        ]);
        let mut pool = OfferPool::new(&o);
        // 0.1 + 0.2 in floating point is 0.30000000000000004; in fixed point it is exact.
        let t1 = pool.take(&Needs::new(0.1, 10.0, 0.0, 0.0, 0, &[])).unwrap();
        let t2 = pool.take(&Needs::new(0.2, 10.0, 0.0, 0.0, 0, &[])).unwrap();
        assert_eq!(pool.free(0), 300);
        assert!(
            t1.resources[0].reservations.len() == 1,
            "took from the reserved entry first"
        );
        assert_eq!(t2.resources[0].scalar.unwrap().value, 0.2);
        assert_eq!(
            t2.resources[0]
                .allocation_info
                .as_ref()
                .unwrap()
                .role
                .as_deref(),
            Some("web")
        );
        // 0.3 spans both entries: two resource entries for one task.
        let t3 = pool.take(&Needs::new(0.3, 10.0, 0.0, 0.0, 0, &[])).unwrap();
        let cpus: Vec<f64> = t3
            .resources
            .iter()
            .filter(|r| r.name == "cpus")
            .map(|r| r.scalar.unwrap().value)
            .collect();
        assert_eq!(
            cpus.len(),
            1,
            "the rest of the reserved entry was 0.0 after 0.1+0.2"
        );
        assert_eq!(pool.free(0), 0);
        assert!(
            pool.take(&Needs::new(0.001, 1.0, 0.0, 0.0, 0, &[]))
                .is_none()
        );
        assert_eq!(pool.free(1), 70_000, "a failed take changes nothing");
    }

    #[test]
    fn unusable_entries_are_ignored() {
        let mut revocable = helpers::cpus(8.0);
        revocable.revocable = Some(RevocableInfo {});
        let mut odd = helpers::scalar("bananas", 3.0);
        odd.name = "bananas".into();
        let o = offer(vec![revocable, odd, helpers::mem(64.0)]);
        let pool = OfferPool::new(&o);
        assert_eq!(pool.free(0), 0);
        assert!(!pool.fits(&Needs::new(1.0, 1.0, 0.0, 0.0, 0, &[])));
        assert!(pool.fits(&Needs::new(0.0, 64.0, 0.0, 0.0, 0, &[])));
    }

    #[test]
    fn ports_fixed_then_dynamic() {
        let o = offer(vec![
            helpers::cpus(4.0),
            helpers::ranges("ports", &[(31000, 31002), (8080, 8080)]),
        ]);
        let mut pool = OfferPool::new(&o);
        let t = pool
            .take(&Needs::new(0.1, 0.0, 0.0, 0.0, 2, &[31001]))
            .unwrap();
        assert_eq!(t.ports, vec![31001, 8080, 31000]);
        let ranges = t.resources.iter().find(|r| r.name == "ports").unwrap();
        let got: Vec<(u64, u64)> = ranges
            .ranges
            .as_ref()
            .unwrap()
            .range
            .iter()
            .map(|r| (r.begin, r.end))
            .collect();
        assert_eq!(got, vec![(8080, 8080), (31000, 31001)]);
        assert!(
            pool.take(&Needs::new(0.1, 0.0, 0.0, 0.0, 0, &[31001]))
                .is_none()
        );
        assert!(pool.take(&Needs::new(0.1, 0.0, 0.0, 0.0, 2, &[])).is_none());
        let t = pool.take(&Needs::new(0.1, 0.0, 0.0, 0.0, 1, &[])).unwrap();
        assert_eq!(t.ports, vec![31002]);
    }

    #[test]
    fn attributes_as_text() {
        let mut o = offer(vec![]);
        o.attributes = mesokit_proto::resources::parse_attributes("rack:r1;weight:2.5").unwrap();
        assert_eq!(attribute_text(&o, "rack").as_deref(), Some("r1"));
        assert_eq!(attribute_text(&o, "weight").as_deref(), Some("2.5"));
        assert_eq!(attribute_text(&o, "hostname").as_deref(), Some("h1"));
        assert_eq!(attribute_text(&o, "zone"), None);
        assert_eq!(offer_role(&o), "*");
    }
}
