//! Placement constraints (Marathon's operators) over an offer's hostname and attributes.
//!
//! [`Placement`] counts where a group's live instances are, per constrained field and value;
//! [`Placement::allows`] says whether one more instance may go on an offer.

use std::collections::HashMap;

use mesokit_proto::v1::Offer;
use regex_lite::Regex;

use crate::offers::attribute_text;
use crate::spec::{Constraint, ConstraintOp};

/// A constraint ready to evaluate (regexes compiled once).
#[derive(Debug, Clone)]
pub struct Compiled {
    field: String,
    op: ConstraintOp,
    regex: Option<Regex>,
}

impl Compiled {
    /// Compiles a constraint; the regex was checked by spec validation, a bad one matches nothing.
    pub fn new(c: &Constraint) -> Compiled {
        let regex = match &c.op {
            ConstraintOp::Like(re) | ConstraintOp::Unlike(re) => {
                Regex::new(&format!("^(?:{re})$")).ok()
            }
            _ => None,
        };
        Compiled {
            field: c.field.clone(),
            op: c.op.clone(),
            regex,
        }
    }
}

/// Where a group's instances are: field -> value -> live instances.
#[derive(Debug, Default, Clone)]
pub struct Placement {
    counts: HashMap<String, HashMap<String, u32>>,
}

impl Placement {
    /// Whether one more instance (of a group with `instances` in total) may go on `offer`.
    pub fn allows(&self, constraints: &[Compiled], offer: &Offer, instances: u32) -> bool {
        constraints.iter().all(|c| {
            let value = attribute_text(offer, &c.field);
            let count = |v: &str| {
                self.counts
                    .get(&c.field)
                    .and_then(|m| m.get(v))
                    .copied()
                    .unwrap_or(0)
            };
            match (&c.op, value.as_deref()) {
                (ConstraintOp::Unlike(_), None) => true,
                (_, None) => false,
                (ConstraintOp::Unique, Some(v)) => count(v) == 0,
                (ConstraintOp::MaxPer(n), Some(v)) => count(v) < *n,
                (ConstraintOp::Cluster(Some(want)), Some(v)) => v == want,
                (ConstraintOp::Cluster(None), Some(v)) => match self.counts.get(&c.field) {
                    Some(m) => m.iter().all(|(k, n)| *n == 0 || k == v),
                    None => true,
                },
                (ConstraintOp::GroupBy(n), Some(v)) => count(v) < instances.div_ceil(*n).max(1),
                (ConstraintOp::Like(_), Some(v)) => c.regex.as_ref().is_some_and(|r| r.is_match(v)),
                (ConstraintOp::Unlike(_), Some(v)) => {
                    c.regex.as_ref().is_none_or(|r| !r.is_match(v))
                }
            }
        })
    }

    /// Records an instance placed on `offer` (`delta` = 1) or gone from it (`delta` = -1).
    pub fn record(
        &mut self,
        constraints: &[Compiled],
        offer_values: &[(String, String)],
        delta: i32,
    ) {
        for (field, value) in offer_values {
            if !constraints.iter().any(|c| &c.field == field) {
                continue;
            }
            // Keys are copied only the first time a field or value is seen.
            if !self.counts.contains_key(field) {
                self.counts.insert(field.clone(), HashMap::new());
            }
            let Some(values) = self.counts.get_mut(field) else {
                continue;
            };
            match values.get_mut(value) {
                Some(n) => *n = n.saturating_add_signed(delta),
                None => {
                    values.insert(value.clone(), 0u32.saturating_add_signed(delta));
                }
            }
        }
    }
}

/// The values of the constrained fields on an offer, to keep with the instance.
pub fn values_for(constraints: &[Compiled], offer: &Offer) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in constraints {
        if out.iter().any(|(f, _)| *f == c.field) {
            continue;
        }
        if let Some(v) = attribute_text(offer, &c.field) {
            out.push((c.field.clone(), v.into_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(host: &str, attrs: &str) -> Offer {
        Offer {
            hostname: host.into(),
            attributes: mesokit_proto::resources::parse_attributes(attrs).unwrap(),
            ..Offer::default()
        }
    }

    fn compile(field: &str, op: ConstraintOp) -> Vec<Compiled> {
        vec![Compiled::new(&Constraint {
            field: field.into(),
            op,
        })]
    }

    fn place(p: &mut Placement, cs: &[Compiled], o: &Offer) {
        let v = values_for(cs, o);
        p.record(cs, &v, 1);
    }

    #[test]
    fn unique_and_max_per() {
        let cs = compile("hostname", ConstraintOp::Unique);
        let mut p = Placement::default();
        let a = offer("a", "");
        assert!(p.allows(&cs, &a, 3));
        place(&mut p, &cs, &a);
        assert!(!p.allows(&cs, &a, 3));
        assert!(p.allows(&cs, &offer("b", ""), 3));
        p.record(&cs, &values_for(&cs, &a), -1);
        assert!(p.allows(&cs, &a, 3), "a finished instance frees its host");

        let cs = compile("rack", ConstraintOp::MaxPer(2));
        let mut p = Placement::default();
        let r1 = offer("a", "rack:r1");
        place(&mut p, &cs, &r1);
        assert!(p.allows(&cs, &r1, 9));
        place(&mut p, &cs, &r1);
        assert!(!p.allows(&cs, &offer("b", "rack:r1"), 9));
        assert!(!p.allows(&cs, &offer("c", ""), 9), "missing attribute");
    }

    #[test]
    fn cluster_group_by_like_unlike() {
        let cs = compile("zone", ConstraintOp::Cluster(None));
        let mut p = Placement::default();
        place(&mut p, &cs, &offer("a", "zone:z1"));
        assert!(p.allows(&cs, &offer("b", "zone:z1"), 4));
        assert!(!p.allows(&cs, &offer("c", "zone:z2"), 4));
        let cs = compile("zone", ConstraintOp::Cluster(Some("z2".into())));
        assert!(!Placement::default().allows(&cs, &offer("b", "zone:z1"), 4));

        let cs = compile("rack", ConstraintOp::GroupBy(2));
        let mut p = Placement::default();
        let r1 = offer("a", "rack:r1");
        place(&mut p, &cs, &r1);
        place(&mut p, &cs, &r1);
        assert!(
            !p.allows(&cs, &r1, 4),
            "4 instances over 2 racks: 2 per rack"
        );
        assert!(p.allows(&cs, &offer("b", "rack:r2"), 4));

        let like = compile("hostname", ConstraintOp::Like("web-[0-9]+".into()));
        let p = Placement::default();
        assert!(p.allows(&like, &offer("web-12", ""), 1));
        assert!(!p.allows(&like, &offer("web-12x", ""), 1), "whole value");
        let unlike = compile("hostname", ConstraintOp::Unlike("db.*".into()));
        assert!(p.allows(&unlike, &offer("web", ""), 1));
        assert!(!p.allows(&unlike, &offer("db1", ""), 1));
        let unlike_attr = compile("gpu", ConstraintOp::Unlike("yes".into()));
        assert!(p.allows(&unlike_attr, &offer("x", ""), 1));
    }
}
