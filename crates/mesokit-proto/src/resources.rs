//! Exact Mesos resource maths: the `--resources` / `--attributes` text forms, fixed-point
//! scalars, ranges as interval sets, sets as string sets, roles and reservations, and the v0 JSON
//! objects `/state` prints. Behaviour follows `src/common/{values,resources,attributes}.cpp`.

use std::borrow::Cow;
use std::fmt;

use crate::helpers;
use crate::v1::{AgentInfo, Attribute, Resource, resource, value};

/// Mesos compares and adds scalars in fixed point with 3 decimals: `llround(v * 1000)`.
pub fn to_fixed(v: f64) -> i64 {
    // `f64::round` rounds half away from zero, like `llround`; `as` saturates.
    (v * 1000.0).round() as i64
}

/// The inverse of [`to_fixed`].
pub fn from_fixed(v: i64) -> f64 {
    v as f64 / 1000.0
}

/// What was wrong with a resource or attribute description. The message names the offending
/// text so that a user can find it in their flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// One `name(role):value` item of the text form, or one resource of the JSON form.
    #[error("invalid resource '{item}': {reason}")]
    Resource {
        /// The item as written (or the resource's name, for the JSON form).
        item: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JSON array form could not be decoded.
    #[error("invalid resources JSON: {reason}")]
    Json {
        /// The decoder's message.
        reason: String,
    },
    /// One `name:value` item of an `--attributes` string.
    #[error("invalid attribute '{item}': {reason}")]
    Attribute {
        /// The item as written.
        item: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A normalized collection of resources, as Mesos's `Resources` class keeps them.
///
/// Entries with the same identity (name, type, role and reservations, allocation, disk,
/// revocable, shared, provider) are merged, so each identity appears once. Scalars are rounded to
/// 3 decimals, ranges are sorted and coalesced, set items sorted and deduplicated, and empty
/// entries are dropped. Equality is order-insensitive over entries.
///
/// Reservations are compared in post-refinement form: a pre-refinement `role: "dev"` (with or
/// without the single `reservation`) is the same reservation as `reservations: [{role: "dev"}]`,
/// so resources in either format add, subtract and contain each other.
///
/// ```
/// use mesokit_proto::resources::Resources;
///
/// let mut agent = Resources::parse("cpus:4;mem:8192;ports:[31000-32000];cpus(dev):2").unwrap();
/// let task = Resources::parse("cpus:0.1;mem:128;ports:[31005-31005]").unwrap();
/// assert!(agent.contains(&task));
/// agent.subtract(&task);
/// assert_eq!(agent.scalar("cpus"), 5.9);
/// assert_eq!(agent.ranges("ports"), [(31000, 31004), (31006, 32000)]);
/// assert_eq!(
///     agent.to_v0_json(),
///     r#"{"cpus":5.9,"gpus":0.0,"mem":8064.0,"disk":0.0,"ports":"[31000-31004, 31006-32000]"}"#
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct Resources {
    items: Vec<Resource>,
}

impl PartialEq for Resources {
    fn eq(&self, other: &Self) -> bool {
        self.items.len() == other.items.len()
            && self.items.iter().all(|a| {
                other
                    .items
                    .iter()
                    .any(|b| same_identity(a, b) && same_value(a, b))
            })
    }
}

impl Resources {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses Mesos's `--resources` flag: either the text form
    /// `cpus:4;mem:8192;disk:20000;ports:[31000-32000];zones:{a,b}` with an optional role in
    /// parentheses (`cpus(dev):2`, a static reservation; `*` is unreserved), or a JSON array of
    /// `Resource` objects. Items with the same identity are added; empty ones (`cpus:0`) skipped.
    pub fn parse(text: &str) -> Result<Resources, ResourcesError> {
        let trimmed = text.trim();
        if trimmed.starts_with('[') {
            return Self::parse_json(trimmed);
        }
        // What `Display` prints for no resources.
        if trimmed == "{}" {
            return Ok(Resources::new());
        }
        let mut checker = CommandLineCheck::default();
        let mut out = Resources::new();
        for token in text.split(';') {
            if token.trim().is_empty() {
                continue;
            }
            let err = |reason: String| ResourcesError::Resource {
                item: token.trim().to_owned(),
                reason,
            };
            // Like stout's `tokenize`, empty pieces are ignored.
            let pair: Vec<&str> = token.split(':').filter(|s| !s.is_empty()).collect();
            if pair.len() != 2 {
                return Err(err("expected exactly one ':' between name and value".into()));
            }
            let (name, role) = match pair[0].find('(') {
                None => (pair[0].trim(), "*"),
                Some(open) => {
                    let close = pair[0][open..]
                        .find(')')
                        .map(|c| c + open)
                        .ok_or_else(|| err("mismatched parentheses".into()))?;
                    (pair[0][..open].trim(), pair[0][open + 1..close].trim())
                }
            };
            if name.is_empty() {
                return Err(err("empty resource name".into()));
            }
            validate_role(role).map_err(err)?;
            let mut r = match parse_value(pair[1]).map_err(err)? {
                Parsed::Scalar(v) => helpers::scalar(name, v),
                Parsed::Ranges(rs) => helpers::ranges(name, &rs),
                Parsed::Set(items) => {
                    let items: Vec<&str> = items.iter().map(String::as_str).collect();
                    helpers::set(name, &items)
                }
                Parsed::Text(t) => {
                    return Err(err(format!(
                        "'{t}' is not a scalar, [ranges] or {{set}} value"
                    )));
                }
            };
            if role != "*" {
                #[allow(deprecated)]
                {
                    r.role = Some(role.to_owned());
                }
                r.reservations.push(resource::ReservationInfo {
                    r#type: Some(resource::reservation_info::Type::Static as i32),
                    role: Some(role.to_owned()),
                    ..Default::default()
                });
            }
            checker.check(&r).map_err(err)?;
            if let Some(r) = validate(r, true).map_err(err)? {
                out.add_one(r);
            }
        }
        Ok(out)
    }

    fn parse_json(text: &str) -> Result<Resources, ResourcesError> {
        // Our codec decodes messages, not bare arrays: borrow AgentInfo's `resources` field.
        let wrapped = format!("{{\"hostname\":\"x\",\"resources\":{text}}}");
        let info: AgentInfo =
            crate::json::decode_str(&wrapped).map_err(|e| ResourcesError::Json {
                reason: e.to_string(),
            })?;
        let mut checker = CommandLineCheck::default();
        let mut out = Resources::new();
        for r in info.resources {
            let item = r.name.clone();
            let err = |reason| ResourcesError::Resource { item, reason };
            let checked = checker
                .check(&r)
                .and_then(|()| validate_reservations(&r))
                .and_then(|()| validate(r, true));
            if let Some(r) = checked.map_err(err)? {
                out.add_one(r);
            }
        }
        Ok(out)
    }

    /// Normalizes a list of resources: entries with the same identity are merged, empty ones
    /// (zero scalars, no ranges, empty sets) and invalid ones (negative or non-finite scalars,
    /// inverted ranges, a value that does not match the type, TEXT) are dropped, as Mesos's
    /// `Resources +=` drops them.
    pub fn from_vec(v: Vec<Resource>) -> Resources {
        let mut out = Resources::new();
        for r in v {
            if let Ok(Some(r)) = validate(r, false) {
                out.add_one(r);
            }
        }
        out
    }

    /// The normalized entries.
    pub fn as_slice(&self) -> &[Resource] {
        &self.items
    }

    /// The normalized entries, owned.
    pub fn into_vec(self) -> Vec<Resource> {
        self.items
    }

    /// No resources at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether every entry of `other` fits in the entry of `self` with the same identity.
    pub fn contains(&self, other: &Resources) -> bool {
        other.items.iter().all(|o| {
            self.items
                .iter()
                .find(|s| same_identity(s, o))
                .is_some_and(|s| value_contains(s, o))
        })
    }

    /// Adds `other`: scalars in fixed point, ranges and sets as unions.
    pub fn add(&mut self, other: &Resources) {
        for r in &other.items {
            self.add_one(r.clone());
        }
    }

    /// Removes what `other` has of each identity. Like Mesos's `-=` this saturates: a scalar that
    /// would go negative, or a range or set emptied, disappears; what `self` lacks is ignored.
    pub fn subtract(&mut self, other: &Resources) {
        for o in &other.items {
            let Some(i) = self.items.iter().position(|s| same_identity(s, o)) else {
                continue;
            };
            let s = &mut self.items[i];
            let empty = match value_type(s) {
                Some(value::Type::Scalar) => {
                    let left = to_fixed(scalar_of(s)) - to_fixed(scalar_of(o));
                    s.scalar = Some(value::Scalar {
                        value: from_fixed(left),
                    });
                    left <= 0
                }
                Some(value::Type::Ranges) => {
                    let left = ranges_minus(&ranges_of(s), &ranges_of(o));
                    let empty = left.is_empty();
                    set_ranges(s, left);
                    empty
                }
                Some(value::Type::Set) => {
                    let remove = set_of(o);
                    let set = s.set.get_or_insert_with(Default::default);
                    set.item.retain(|i| !remove.contains(i));
                    set.item.is_empty()
                }
                _ => true,
            };
            if empty {
                self.items.remove(i);
            }
        }
    }

    /// `self - other` if `self` contains `other`, else `None`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut out = self.clone();
        out.subtract(other);
        Some(out)
    }

    /// The total of scalar `name` over all roles, reservations and allocations; 0.0 if none.
    pub fn scalar(&self, name: &str) -> f64 {
        let total = self
            .items
            .iter()
            .filter(|r| r.name == name && value_type(r) == Some(value::Type::Scalar))
            .map(|r| to_fixed(scalar_of(r)))
            .sum();
        from_fixed(total)
    }

    /// The union of ranges `name` over all roles, sorted and coalesced.
    pub fn ranges(&self, name: &str) -> Vec<(u64, u64)> {
        let all: Vec<(u64, u64)> = self
            .items
            .iter()
            .filter(|r| r.name == name && value_type(r) == Some(value::Type::Ranges))
            .flat_map(ranges_of)
            .collect();
        coalesce(all)
    }

    /// The union of set `name` over all roles, sorted.
    pub fn set(&self, name: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .items
            .iter()
            .filter(|r| r.name == name && value_type(r) == Some(value::Type::Set))
            .flat_map(set_of)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The entries for which `f` is true.
    pub fn filter(&self, f: impl Fn(&Resource) -> bool) -> Resources {
        Resources {
            items: self.items.iter().filter(|r| f(r)).cloned().collect(),
        }
    }

    /// Sets `allocation_info.role` on every entry, as the master does when offering to a role.
    pub fn allocate(&mut self, role: &str) {
        self.set_allocation(Some(resource::AllocationInfo {
            role: Some(role.to_owned()),
        }));
    }

    /// Clears `allocation_info` on every entry.
    pub fn unallocate(&mut self) {
        self.set_allocation(None);
    }

    fn set_allocation(&mut self, info: Option<resource::AllocationInfo>) {
        let mut items = std::mem::take(&mut self.items);
        for r in &mut items {
            r.allocation_info = info.clone();
        }
        // Entries that differed only in allocation now have the same identity.
        for r in items {
            self.add_one(r);
        }
    }

    /// The v0 JSON object Mesos's `/state` prints for resources:
    /// `{"cpus":4.0,"gpus":0.0,"mem":7808.0,"disk":51200.0,"ports":"[31000-32000]"}`.
    ///
    /// `cpus`, `gpus`, `mem` and `disk` are always there; then the other scalars, ranges
    /// (`"[a-b, c-d]"`) and sets (`"{a, b}"`), each group by name. Revocable resources get a
    /// `_revocable` suffix. Roles are summed over.
    pub fn to_v0_json(&self) -> String {
        let mut scalars: Vec<(String, i64)> = ["cpus", "gpus", "mem", "disk"]
            .iter()
            .map(|n| ((*n).to_owned(), 0))
            .collect();
        let mut ranges: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
        let mut sets: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.items {
            let name = if r.revocable.is_some() {
                format!("{}_revocable", r.name)
            } else {
                r.name.clone()
            };
            match value_type(r) {
                Some(value::Type::Scalar) => *entry(&mut scalars, name) += to_fixed(scalar_of(r)),
                Some(value::Type::Ranges) => entry(&mut ranges, name).extend(ranges_of(r)),
                Some(value::Type::Set) => entry(&mut sets, name).extend(set_of(r)),
                _ => {}
            }
        }
        // The four defaults keep their place; the rest are in name order.
        scalars[4..].sort();
        ranges.sort();
        sets.sort();

        let mut out = Vec::with_capacity(128);
        let mut w = crate::json::Writer::new(&mut out);
        w.begin_object();
        for (name, v) in scalars {
            w.map_key(&name);
            w.f64(from_fixed(v));
        }
        for (name, rs) in ranges {
            w.map_key(&name);
            w.string(&format_ranges(&coalesce(rs)));
        }
        for (name, mut items) in sets {
            items.sort();
            items.dedup();
            w.map_key(&name);
            w.string(&format_set(&items));
        }
        w.end_object();
        String::from_utf8(out).expect("JSON writer produced invalid UTF-8")
    }

    /// Adds one validated, non-empty resource.
    fn add_one(&mut self, r: Resource) {
        let Some(s) = self.items.iter_mut().find(|s| same_identity(s, &r)) else {
            self.items.push(r);
            return;
        };
        match value_type(s) {
            Some(value::Type::Scalar) => {
                let sum = to_fixed(scalar_of(s)).saturating_add(to_fixed(scalar_of(&r)));
                s.scalar = Some(value::Scalar {
                    value: from_fixed(sum),
                });
            }
            Some(value::Type::Ranges) => {
                let mut all = ranges_of(s);
                all.extend(ranges_of(&r));
                set_ranges(s, coalesce(all));
            }
            Some(value::Type::Set) => {
                let set = s.set.get_or_insert_with(Default::default);
                set.item.extend(set_of(&r));
                set.item.sort();
                set.item.dedup();
            }
            _ => {}
        }
    }
}

impl fmt::Display for Resources {
    /// Mesos's text form: `cpus:4; mem:8192; ports:[31000-32000]`, with the role in parentheses
    /// when reserved (`cpus(dev):2`, the innermost role of a refined reservation),
    /// `(allocated: role)` when allocated, `{REV}` when revocable and `<SHARED>` when shared;
    /// `{}` when empty. Without allocation, revocable and shared markers it parses back with
    /// [`Resources::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&r.name)?;
            if let Some(role) = reserved_role(r) {
                write!(f, "({role})")?;
            }
            if let Some(a) = &r.allocation_info {
                write!(f, "(allocated: {})", a.role.as_deref().unwrap_or(""))?;
            }
            if r.revocable.is_some() {
                f.write_str("{REV}")?;
            }
            if r.shared.is_some() {
                f.write_str("<SHARED>")?;
            }
            f.write_str(":")?;
            match value_type(r) {
                Some(value::Type::Scalar) => write!(f, "{}", scalar_of(r))?,
                Some(value::Type::Ranges) => f.write_str(&format_ranges(&ranges_of(r)))?,
                Some(value::Type::Set) => f.write_str(&format_set(&set_of(r)))?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Ranges as Mesos prints them: `[31000-31005, 31010-32000]`.
pub fn format_ranges(r: &[(u64, u64)]) -> String {
    let parts: Vec<String> = r.iter().map(|(b, e)| format!("{b}-{e}")).collect();
    format!("[{}]", parts.join(", "))
}

fn format_set(items: &[String]) -> String {
    format!("{{{}}}", items.join(", "))
}

/// Parses Mesos's `--attributes` flag: `rack:r1;slots:4;zones:{a,b};range:[1-10]`. Values are
/// typed as Mesos types them: a number is SCALAR, `[..]` RANGES, `{..}` SET, anything else TEXT.
/// Items are separated by `;` or newlines; only the first `:` separates name from value.
pub fn parse_attributes(text: &str) -> Result<Vec<Attribute>, ResourcesError> {
    let mut out = Vec::new();
    for token in text.split([';', '\n']) {
        if token.trim().is_empty() {
            continue;
        }
        let err = |reason: String| ResourcesError::Attribute {
            item: token.trim().to_owned(),
            reason,
        };
        let Some((name, val)) = token.split_once(':') else {
            return Err(err("expected name:value".into()));
        };
        let name = name.trim();
        if name.is_empty() || val.trim().is_empty() {
            return Err(err("expected name:value".into()));
        }
        let mut a = Attribute {
            name: name.to_owned(),
            ..Default::default()
        };
        match parse_value(val).map_err(err)? {
            Parsed::Scalar(v) => {
                a.r#type = value::Type::Scalar as i32;
                a.scalar = Some(value::Scalar { value: v });
            }
            Parsed::Ranges(rs) => {
                a.r#type = value::Type::Ranges as i32;
                a.ranges = Some(to_ranges_msg(&rs));
            }
            Parsed::Set(item) => {
                a.r#type = value::Type::Set as i32;
                a.set = Some(value::Set { item });
            }
            Parsed::Text(t) => {
                a.r#type = value::Type::Text as i32;
                a.text = Some(value::Text { value: t });
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// The v0 JSON object of agent attributes: `{"rack":"r1","slots":4.0,"zones":"{a, b}"}`, in
/// the attributes' order.
pub fn attributes_v0_json(attrs: &[Attribute]) -> String {
    let mut out = Vec::with_capacity(64);
    let mut w = crate::json::Writer::new(&mut out);
    w.begin_object();
    for a in attrs {
        w.map_key(&a.name);
        match value::Type::try_from(a.r#type) {
            Ok(value::Type::Scalar) => w.f64(a.scalar.as_ref().map_or(0.0, |s| s.value)),
            Ok(value::Type::Ranges) => {
                let rs: Vec<(u64, u64)> = a
                    .ranges
                    .iter()
                    .flat_map(|r| r.range.iter().map(|r| (r.begin, r.end)))
                    .collect();
                w.string(&format_ranges(&rs));
            }
            Ok(value::Type::Set) => {
                w.string(&format_set(a.set.as_ref().map_or(&[][..], |s| &s.item)));
            }
            _ => w.string(a.text.as_ref().map_or("", |t| &t.value)),
        }
    }
    w.end_object();
    String::from_utf8(out).expect("JSON writer produced invalid UTF-8")
}

/// A value of the text form, typed as `values::parse` types it.
enum Parsed {
    Scalar(f64),
    Ranges(Vec<(u64, u64)>),
    Set(Vec<String>),
    Text(String),
}

/// Mesos's `values::parse`: spaces are removed, then `[..]` is ranges, `{..}` a set, a number a
/// scalar and anything else text.
fn parse_value(text: &str) -> Result<Parsed, String> {
    let t: String = text.chars().filter(|c| *c != ' ').collect();
    if t.is_empty() {
        return Err("empty value".into());
    }
    for (open, close) in [('{', '}'), ('[', ']'), ('(', ')')] {
        if !brackets_match(&t, open, close) {
            return Err(format!("mismatched '{open}' and '{close}' in '{t}'"));
        }
    }
    match (t.find('['), t.find('{')) {
        (Some(0), _) => {
            let tokens: Vec<&str> = t
                .split(['[', ']', '-', ',', '\n'])
                .filter(|s| !s.is_empty())
                .collect();
            if tokens.is_empty() || tokens.len() % 2 != 0 {
                return Err(format!("expected ranges like [1-10, 20-30] in '{t}'"));
            }
            let mut rs = Vec::with_capacity(tokens.len() / 2);
            for pair in tokens.chunks(2) {
                let num = |s: &str| {
                    s.parse::<u64>()
                        .map_err(|_| format!("expected a non-negative integer, found '{s}'"))
                };
                let (b, e) = (num(pair[0])?, num(pair[1])?);
                if b > e {
                    return Err(format!("range {b}-{e} has its begin after its end"));
                }
                rs.push((b, e));
            }
            Ok(Parsed::Ranges(coalesce(rs)))
        }
        (Some(_), _) => Err(format!("unexpected '[' in '{t}'")),
        (None, Some(0)) => Ok(Parsed::Set(
            t.split(['{', '}', ',', '\n'])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        (None, Some(_)) => Err(format!("unexpected '{{' in '{t}'")),
        // Only finite, non-negative numbers are scalars; "-1", "inf" and "nan" are text.
        (None, None) => match parse_number(&t) {
            Some(v) if v != 0.0 && !v.is_normal() && v.is_finite() => {
                Err(format!("subnormal value '{t}' is not supported"))
            }
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Parsed::Scalar(v)),
            _ => Ok(Parsed::Text(t)),
        },
    }
}

/// stout's `numify<double>`: a C number, which Rust's parser mostly agrees with; hex floats
/// (`0x1p3`) are left to be text.
fn parse_number(t: &str) -> Option<f64> {
    let lower = t.to_ascii_lowercase();
    if lower.trim_start_matches(['+', '-']).starts_with("0x") {
        return None;
    }
    t.parse::<f64>().ok()
}

fn brackets_match(s: &str, open: char, close: char) -> bool {
    let mut depth = 0i64;
    for c in s.chars() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth < 0 {
                return false;
            }
        }
    }
    depth == 0
}

/// Mesos's `roles::validate`: `*`, or a `/`-separated path of components that are not `.`,
/// `..` or `*`, do not start with `-` and hold no whitespace or DEL.
fn validate_role(role: &str) -> Result<(), String> {
    if role == "*" {
        return Ok(());
    }
    if role.is_empty() {
        return Err("role names cannot be the empty string".into());
    }
    if role.starts_with('/') || role.ends_with('/') || role.contains("//") {
        return Err(format!(
            "role '{role}' cannot start or end with a slash or contain two adjacent slashes"
        ));
    }
    for c in role.split('/') {
        if c == "." || c == ".." || c == "*" {
            return Err(format!("role '{role}' cannot include '{c}' as a component"));
        }
        if c.starts_with('-') {
            return Err(format!("role component '{c}' cannot start with a dash"));
        }
        if c.chars().any(|ch| matches!(ch, '\t'..='\r' | ' ' | '\x7f')) {
            return Err(format!("role component '{c}' contains whitespace"));
        }
    }
    Ok(())
}

/// The reservation checks of `Resources::validate` for resources read from JSON.
fn validate_reservations(r: &Resource) -> Result<(), String> {
    if r.reservations.is_empty() {
        #[allow(deprecated)]
        return validate_role(r.role.as_deref().unwrap_or("*"));
    }
    for info in &r.reservations {
        if info.r#type.is_none() {
            return Err("a reservation needs its 'type'".into());
        }
        validate_role(info.role.as_deref().unwrap_or(""))?;
    }
    Ok(())
}

/// `validateCommandLineResources`: what an agent's `--resources` may not contain.
#[derive(Default)]
struct CommandLineCheck {
    types: Vec<(String, i32)>,
}

impl CommandLineCheck {
    fn check(&mut self, r: &Resource) -> Result<(), String> {
        if r.disk.as_ref().is_some_and(|d| d.persistence.is_some()) {
            return Err("persistent volumes cannot be given on the command line".into());
        }
        if r.revocable.is_some() {
            return Err("revocable resources cannot be given on the command line".into());
        }
        let dynamic = resource::reservation_info::Type::Dynamic as i32;
        if effective_reservations(r)
            .last()
            .is_some_and(|i| i.r#type == Some(dynamic))
        {
            return Err("dynamic reservations cannot be given on the command line".into());
        }
        match self.types.iter().find(|(n, _)| *n == r.name) {
            Some((_, t)) if *t != r.r#type => Err(format!(
                "resources named '{}' must all have the same type",
                r.name
            )),
            Some(_) => Ok(()),
            None => {
                self.types.push((r.name.clone(), r.r#type));
                Ok(())
            }
        }
    }
}

/// Mesos's `Resources::validate` (value checks) plus canonical form. `Ok(None)` means valid but
/// empty. `strict` also rejects what Mesos rejects but we could repair: overlapping ranges and
/// duplicate set items.
fn validate(mut r: Resource, strict: bool) -> Result<Option<Resource>, String> {
    if r.name.is_empty() {
        return Err("empty resource name".into());
    }
    match value_type(&r) {
        Some(value::Type::Scalar) => {
            let Some(s) = r.scalar.as_mut() else {
                return Err("a SCALAR resource needs a scalar value".into());
            };
            if r.ranges.is_some() || r.set.is_some() {
                return Err("a SCALAR resource must not have ranges or a set".into());
            }
            if !s.value.is_finite() || s.value < 0.0 {
                return Err(format!(
                    "scalar {} is not a finite, non-negative number",
                    s.value
                ));
            }
            let fixed = to_fixed(s.value);
            if s.value != 0.0 && fixed == 0 {
                return Err(format!(
                    "scalar {} would be 0 with the 3 decimals Mesos keeps",
                    s.value
                ));
            }
            s.value = from_fixed(fixed);
            Ok((fixed > 0).then_some(r))
        }
        Some(value::Type::Ranges) => {
            if r.scalar.is_some() || r.set.is_some() {
                return Err("a RANGES resource must not have a scalar or a set".into());
            }
            let Some(msg) = &r.ranges else {
                return Err("a RANGES resource needs ranges".into());
            };
            if let Some(bad) = msg.range.iter().find(|x| x.begin > x.end) {
                return Err(format!(
                    "range {}-{} has its begin after its end",
                    bad.begin, bad.end
                ));
            }
            let rs = coalesce(ranges_of(&r));
            let covered =
                |rs: &[(u64, u64)]| -> u128 { rs.iter().map(|(b, e)| u128::from(e - b) + 1).sum() };
            if strict && covered(&rs) != covered(&ranges_of(&r)) {
                return Err("ranges overlap".into());
            }
            let empty = rs.is_empty();
            set_ranges(&mut r, rs);
            Ok((!empty).then_some(r))
        }
        Some(value::Type::Set) => {
            if r.scalar.is_some() || r.ranges.is_some() {
                return Err("a SET resource must not have a scalar or ranges".into());
            }
            let Some(set) = r.set.as_mut() else {
                return Err("a SET resource needs a set".into());
            };
            let before = set.item.len();
            set.item.sort();
            set.item.dedup();
            if strict && set.item.len() != before {
                return Err("duplicate set items".into());
            }
            let empty = set.item.is_empty();
            Ok((!empty).then_some(r))
        }
        Some(value::Type::Text) => Err("TEXT is not a resource type".into()),
        None => Err(format!("unknown value type {}", r.r#type)),
    }
}

fn value_type(r: &Resource) -> Option<value::Type> {
    value::Type::try_from(r.r#type).ok()
}

fn scalar_of(r: &Resource) -> f64 {
    r.scalar.as_ref().map_or(0.0, |s| s.value)
}

fn ranges_of(r: &Resource) -> Vec<(u64, u64)> {
    r.ranges
        .iter()
        .flat_map(|rs| rs.range.iter().map(|x| (x.begin, x.end)))
        .collect()
}

fn set_of(r: &Resource) -> Vec<String> {
    r.set.as_ref().map_or_else(Vec::new, |s| s.item.clone())
}

fn to_ranges_msg(rs: &[(u64, u64)]) -> value::Ranges {
    value::Ranges {
        range: rs
            .iter()
            .map(|&(begin, end)| value::Range { begin, end })
            .collect(),
    }
}

fn set_ranges(r: &mut Resource, rs: Vec<(u64, u64)>) {
    r.ranges = Some(to_ranges_msg(&rs));
}

fn entry<T: Default>(v: &mut Vec<(String, T)>, name: String) -> &mut T {
    let i = match v.iter().position(|(n, _)| *n == name) {
        Some(i) => i,
        None => {
            v.push((name, T::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

/// Sorts inclusive intervals and merges overlapping and adjacent ones; drops inverted ones.
fn coalesce(mut rs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    rs.retain(|(b, e)| b <= e);
    rs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(rs.len());
    for (b, e) in rs {
        match out.last_mut() {
            Some((_, end)) if b <= end.saturating_add(1) => *end = (*end).max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

/// `a \ b` for coalesced interval sets.
fn ranges_minus(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let b = coalesce(b.to_vec());
    let mut out = Vec::new();
    for &(mut begin, end) in a {
        let mut alive = true;
        for &(rb, re) in &b {
            if re < begin || rb > end {
                continue;
            }
            if rb > begin {
                out.push((begin, rb - 1));
            }
            if re >= end {
                alive = false;
                break;
            }
            begin = re + 1;
        }
        if alive {
            out.push((begin, end));
        }
    }
    out
}

/// Whether coalesced `inner` is a subset of coalesced `outer`.
fn ranges_subset(outer: &[(u64, u64)], inner: &[(u64, u64)]) -> bool {
    inner
        .iter()
        .all(|&(b, e)| outer.iter().any(|&(ob, oe)| ob <= b && e <= oe))
}

fn value_contains(s: &Resource, o: &Resource) -> bool {
    match value_type(s) {
        Some(value::Type::Scalar) => to_fixed(scalar_of(s)) >= to_fixed(scalar_of(o)),
        Some(value::Type::Ranges) => ranges_subset(&ranges_of(s), &coalesce(ranges_of(o))),
        Some(value::Type::Set) => {
            let have = set_of(s);
            set_of(o).iter().all(|i| have.contains(i))
        }
        _ => false,
    }
}

fn same_value(a: &Resource, b: &Resource) -> bool {
    match value_type(a) {
        Some(value::Type::Scalar) => to_fixed(scalar_of(a)) == to_fixed(scalar_of(b)),
        Some(value::Type::Ranges) => coalesce(ranges_of(a)) == coalesce(ranges_of(b)),
        Some(value::Type::Set) => {
            let (mut x, mut y) = (set_of(a), set_of(b));
            x.sort();
            x.dedup();
            y.sort();
            y.dedup();
            x == y
        }
        _ => false,
    }
}

/// The reservation stack in post-refinement form, as Mesos's
/// `convertToPostReservationRefinement` computes it from a pre-refinement `role`/`reservation`.
fn effective_reservations(r: &Resource) -> Cow<'_, [resource::ReservationInfo]> {
    #[allow(deprecated)]
    let role = r.role.as_deref().unwrap_or("*");
    if !r.reservations.is_empty() || role == "*" {
        return Cow::Borrowed(&r.reservations);
    }
    let mut info = r.reservation.as_deref().cloned().unwrap_or_default();
    let ty = if r.reservation.is_some() {
        resource::reservation_info::Type::Dynamic
    } else {
        resource::reservation_info::Type::Static
    };
    info.r#type = Some(ty as i32);
    info.role = Some(role.to_owned());
    Cow::Owned(vec![info])
}

/// The role a resource is reserved to (the innermost reservation), if any.
fn reserved_role(r: &Resource) -> Option<String> {
    effective_reservations(r)
        .last()
        .map(|i| i.role.clone().unwrap_or_default())
}

fn same_identity(a: &Resource, b: &Resource) -> bool {
    a.name == b.name
        && a.r#type == b.r#type
        && a.allocation_info == b.allocation_info
        && a.disk == b.disk
        && a.revocable == b.revocable
        && a.shared == b.shared
        && a.provider_id == b.provider_id
        && effective_reservations(a) == effective_reservations(b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::helpers;

    fn res(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    #[test]
    fn parses_the_text_form() {
        let r = res("cpus:4;mem:8192;disk:20000;ports:[31000-32000];gpus:1;zones:{a,b}");
        assert_eq!(r.as_slice().len(), 6);
        assert_eq!(r.scalar("cpus"), 4.0);
        assert_eq!(r.scalar("mem"), 8192.0);
        assert_eq!(r.scalar("disk"), 20000.0);
        assert_eq!(r.scalar("gpus"), 1.0);
        assert_eq!(r.scalar("nope"), 0.0);
        assert_eq!(r.ranges("ports"), vec![(31000, 32000)]);
        assert_eq!(r.set("zones"), vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(r.as_slice()[0], helpers::cpus(4.0));
        assert_eq!(r.as_slice()[3], helpers::ranges("ports", &[(31000, 32000)]));
    }

    #[test]
    fn text_form_tolerates_spaces_merges_and_skips_empty() {
        let r = res(" cpus : 1 ; cpus:0.5; mem:0; ports:[ 1-2, 3-5 ,10-10];");
        assert_eq!(r.scalar("cpus"), 1.5);
        assert_eq!(r.scalar("mem"), 0.0);
        assert_eq!(r.ranges("ports"), vec![(1, 5), (10, 10)]);
        assert_eq!(r.as_slice().len(), 2);
        assert!(Resources::parse("").unwrap().is_empty());
        // Hierarchical roles and an empty-looking Display.
        assert_eq!(res("cpus(eng/dev):1").to_string(), "cpus(eng/dev):1");
        assert_eq!(Resources::new().to_string(), "{}");
        assert!(res("{}").is_empty());
    }

    #[test]
    #[allow(deprecated)]
    fn roles_in_parentheses_are_static_reservations() {
        let r = res("cpus(dev):2;mem(*):10");
        let cpus = &r.as_slice()[0];
        assert_eq!(cpus.role.as_deref(), Some("dev"));
        assert_eq!(cpus.reservations.len(), 1);
        assert_eq!(cpus.reservations[0].role.as_deref(), Some("dev"));
        assert_eq!(
            cpus.reservations[0].r#type,
            Some(resource::reservation_info::Type::Static as i32)
        );
        let mem = &r.as_slice()[1];
        assert!(mem.role.is_none() || mem.role.as_deref() == Some("*"));
        assert!(mem.reservations.is_empty());
        assert_eq!(r.to_string(), "cpus(dev):2; mem:10");
    }

    #[test]
    fn errors_name_the_item() {
        let cases = [
            ("cpus:abc", "invalid resource 'cpus:abc': "),
            ("cpus:1;mem", "invalid resource 'mem': "),
            ("cpus:1:2", "invalid resource 'cpus:1:2': "),
            ("cpus(dev:1", "invalid resource 'cpus(dev:1': "),
            ("cpus():1", "invalid resource 'cpus():1': "),
            ("cpus:-1", "invalid resource 'cpus:-1': "),
            ("ports:[5-1]", "invalid resource 'ports:[5-1]': "),
            ("ports:[1-2", "invalid resource 'ports:[1-2': "),
            ("ports:[1-x]", "invalid resource 'ports:[1-x]': "),
            ("ports:[1-2-3]", "invalid resource 'ports:[1-2-3]': "),
            (":4", "invalid resource ':4': "),
            ("cpus:0.0001", "invalid resource 'cpus:0.0001': "),
            ("cpus:1e-310", "invalid resource 'cpus:1e-310': "),
            ("cpus:inf", "invalid resource 'cpus:inf': "),
            ("zones:{a,a}", "invalid resource 'zones:{a,a}': "),
            ("zones:{a}}", "invalid resource 'zones:{a}}': "),
            ("foo:1;foo:[1-2]", "invalid resource 'foo:[1-2]': "),
            ("cpus(/dev):1", "invalid resource 'cpus(/dev):1': "),
            ("cpus(a//b):1", "invalid resource 'cpus(a//b):1': "),
            ("cpus(a/../b):1", "invalid resource 'cpus(a/../b):1': "),
            ("cpus(-a):1", "invalid resource 'cpus(-a):1': "),
            ("cpus(a b):1", "invalid resource 'cpus(a b):1': "),
        ];
        for (text, prefix) in cases {
            let e = Resources::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(prefix), "{text}: {e}");
        }
        let e = Resources::parse("cpus:abc").unwrap_err();
        assert_eq!(
            e,
            ResourcesError::Resource {
                item: "cpus:abc".into(),
                reason: "'abc' is not a scalar, [ranges] or {set} value".into()
            }
        );
    }

    #[test]
    #[allow(deprecated)]
    fn parses_the_json_form() {
        let r = res(r#"[
            {"name":"cpus","type":"SCALAR","scalar":{"value":2.5}},
            {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":3}]}},
            {"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"dev"}
        ]"#);
        assert_eq!(r.scalar("cpus"), 3.5);
        assert_eq!(r.ranges("ports"), vec![(1, 3)]);
        assert_eq!(r.to_string(), "cpus:2.5; ports:[1-3]; cpus(dev):1");
        // The JSON pre-refinement role and the text form's reservation are the same identity.
        assert!(r.contains(&res("cpus(dev):1")));

        let e = Resources::parse(r#"[{"name":"cpus"}]"#).unwrap_err();
        assert!(matches!(e, ResourcesError::Json { .. }), "{e}");
        // What an agent's flags may not say, as validateCommandLineResources has it.
        for (json, why) in [
            (
                r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"revocable":{}}"#,
                "revocable",
            ),
            (
                r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},
                    "reservations":[{"type":"DYNAMIC","role":"dev"}]}"#,
                "dynamic",
            ),
            (
                r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},
                    "reservations":[{"role":"dev"}]}"#,
                "type",
            ),
            (
                r#"{"name":"ports","type":"RANGES","ranges":{"range":[
                    {"begin":1,"end":5},{"begin":3,"end":7}]}}"#,
                "overlap",
            ),
            (r#"{"name":"cpus","type":"TEXT"}"#, "TEXT"),
        ] {
            let e = Resources::parse(&format!("[{json}]"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("invalid resource '") && e.contains(why),
                "{e}"
            );
        }
        let e = Resources::parse(r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid resource 'cpus': "), "{e}");
    }

    #[test]
    fn scalars_are_fixed_point() {
        assert_eq!(to_fixed(0.1), 100);
        assert_eq!(to_fixed(0.0005), 1);
        assert_eq!(to_fixed(-0.0005), -1);
        assert_eq!(from_fixed(300), 0.3);
        let mut a = Resources::from_vec(vec![helpers::cpus(0.1)]);
        a.add(&Resources::from_vec(vec![helpers::cpus(0.2)]));
        assert_eq!(a.scalar("cpus"), 0.3);
        let three = Resources::from_vec(vec![helpers::cpus(0.3)]);
        assert!(a.contains(&three));
        assert!(three.contains(&a));
        assert_eq!(a, three);
        assert!(a.checked_sub(&three).unwrap().is_empty());
        // Tiny remainders round away rather than linger.
        let mut b = Resources::from_vec(vec![helpers::cpus(1.0)]);
        b.subtract(&Resources::from_vec(vec![helpers::cpus(0.9999)]));
        assert!(b.is_empty());
    }

    #[test]
    fn port_ranges_split_and_merge() {
        let mut all = res("ports:[31000-32000]");
        all.subtract(&res("ports:[31005-31005]"));
        assert_eq!(all.ranges("ports"), vec![(31000, 31004), (31006, 32000)]);
        assert_eq!(all.to_string(), "ports:[31000-31004, 31006-32000]");
        all.subtract(&res("ports:[31000-31002, 31900-32100]"));
        assert_eq!(all.ranges("ports"), vec![(31003, 31004), (31006, 31899)]);
        all.add(&res("ports:[31005-31005]"));
        assert_eq!(all.ranges("ports"), vec![(31003, 31899)]);
        all.add(&res("ports:[31900-32000, 31000-31002]"));
        assert_eq!(all, res("ports:[31000-32000]"));
        assert!(all.contains(&Resources::from_vec(vec![helpers::ports(&[
            31000, 31001, 32000
        ])])));
        assert!(!all.contains(&res("ports:[30999-31000]")));
        assert!(all.checked_sub(&res("ports:[32000-32001]")).is_none());
        all.subtract(&res("ports:[0-40000]"));
        assert!(all.is_empty());
        assert_eq!(format_ranges(&[]), "[]");
        assert_eq!(
            ranges_minus(&[(0, u64::MAX)], &[(0, 0), (u64::MAX, u64::MAX)]),
            vec![(1, u64::MAX - 1)]
        );
        assert_eq!(coalesce(vec![(5, u64::MAX), (0, 4)]), vec![(0, u64::MAX)]);
    }

    #[test]
    fn sets_are_string_sets() {
        let mut z = res("zones:{a,b}");
        z.add(&res("zones:{b,c}"));
        assert_eq!(z.set("zones"), vec!["a", "b", "c"]);
        assert!(z.contains(&res("zones:{c,a}")));
        assert!(!z.contains(&res("zones:{d}")));
        z.subtract(&res("zones:{a,b,c}"));
        assert!(z.is_empty());
    }

    #[test]
    fn contains_respects_roles() {
        let reserved = res("cpus(dev):1");
        let unreserved = res("cpus:1");
        assert!(!reserved.contains(&unreserved));
        assert!(!unreserved.contains(&reserved));
        assert!(reserved.contains(&reserved));
        assert!(!res("cpus(ops):4").contains(&reserved));
        let both = res("cpus(dev):1;cpus:2");
        assert_eq!(both.scalar("cpus"), 3.0);
        assert!(both.contains(&reserved) && both.contains(&res("cpus:2")));
        assert!(!both.contains(&res("cpus:3")));
        assert_eq!(both.checked_sub(&reserved), Some(res("cpus:2")));
        // A refinement-style reservation (no deprecated role) is the same identity.
        let refined = Resources::from_vec(vec![Resource {
            reservations: vec![resource::ReservationInfo {
                r#type: Some(resource::reservation_info::Type::Static as i32),
                role: Some("dev".into()),
                ..Default::default()
            }],
            ..helpers::cpus(1.0)
        }]);
        assert!(reserved.contains(&refined) && refined.contains(&reserved));
        // An explicit "*" role is unreserved.
        #[allow(deprecated)]
        let star = Resources::from_vec(vec![Resource {
            role: Some("*".into()),
            ..helpers::cpus(1.0)
        }]);
        assert_eq!(star, unreserved);
    }

    #[test]
    fn allocate_and_unallocate() {
        let mut r = res("cpus:2;mem:100;cpus(dev):1");
        let before = r.clone();
        r.allocate("dev");
        assert!(
            r.as_slice()
                .iter()
                .all(|x| x.allocation_info.as_ref().unwrap().role.as_deref() == Some("dev"))
        );
        assert!(!r.contains(&before) && !before.contains(&r));
        assert_eq!(r.scalar("cpus"), 3.0);
        assert_eq!(
            r.to_string(),
            "cpus(allocated: dev):2; mem(allocated: dev):100; cpus(dev)(allocated: dev):1"
        );
        r.unallocate();
        assert_eq!(r, before);
        assert!(r.as_slice().iter().all(|x| x.allocation_info.is_none()));

        // Entries that differed only in allocation merge.
        let mut a = res("cpus:1");
        a.allocate("x");
        let mut b = res("cpus:2");
        b.allocate("y");
        a.add(&b);
        a.unallocate();
        assert_eq!(a.as_slice().len(), 1);
        assert_eq!(a.scalar("cpus"), 3.0);
    }

    #[test]
    fn from_vec_normalizes() {
        let r = Resources::from_vec(vec![
            helpers::cpus(1.0),
            helpers::mem(0.0),
            helpers::cpus(0.5),
            helpers::ranges("ports", &[(5, 6), (1, 4)]),
            helpers::ranges("ports", &[]),
            helpers::set("s", &["b", "a", "b"]),
            helpers::scalar("bad", -1.0),
            helpers::scalar("nan", f64::NAN),
            Resource {
                scalar: None,
                ..helpers::cpus(1.0)
            },
        ]);
        assert_eq!(
            r.clone().into_vec(),
            vec![
                helpers::cpus(1.5),
                helpers::ranges("ports", &[(1, 6)]),
                helpers::set("s", &["a", "b"]),
            ]
        );
        assert_eq!(r.filter(|x| x.name == "s").to_string(), "s:{a, b}");
        assert_eq!(res("mem:1;cpus:2"), res("cpus:2;mem:1"));
        assert_ne!(res("mem:1;cpus:2"), res("cpus:2;mem:2"));
    }

    #[test]
    fn v0_json_is_byte_exact() {
        let r = res("cpus:4;mem:7808;disk:51200;ports:[31000-32000]");
        assert_eq!(
            r.to_v0_json(),
            r#"{"cpus":4.0,"gpus":0.0,"mem":7808.0,"disk":51200.0,"ports":"[31000-32000]"}"#
        );
        assert_eq!(
            Resources::new().to_v0_json(),
            r#"{"cpus":0.0,"gpus":0.0,"mem":0.0,"disk":0.0}"#
        );
        let mut r = res(
            "cpus(dev):0.5;cpus:1;ports:[31010-32000];ports(dev):[31000-31005];zones:{b,a};fpga:2",
        );
        r.add(&Resources::from_vec(vec![Resource {
            revocable: Some(resource::RevocableInfo {}),
            ..helpers::cpus(0.25)
        }]));
        assert_eq!(
            r.to_v0_json(),
            concat!(
                r#"{"cpus":1.5,"gpus":0.0,"mem":0.0,"disk":0.0,"cpus_revocable":0.25,"fpga":2.0,"#,
                r#""ports":"[31000-31005, 31010-32000]","zones":"{a, b}"}"#
            )
        );
    }

    #[test]
    fn attributes_parse_and_print() {
        let a = parse_attributes("rack:r1;slots:4;zones:{a,b};range:[1-10, 11-20]\nos:linux 5")
            .unwrap();
        let types: Vec<value::Type> = a
            .iter()
            .map(|x| value::Type::try_from(x.r#type).unwrap())
            .collect();
        assert_eq!(
            types,
            [
                value::Type::Text,
                value::Type::Scalar,
                value::Type::Set,
                value::Type::Ranges,
                value::Type::Text
            ]
        );
        assert_eq!(a[0].text.as_ref().unwrap().value, "r1");
        assert_eq!(a[1].scalar.as_ref().unwrap().value, 4.0);
        assert_eq!(a[2].set.as_ref().unwrap().item, ["a", "b"]);
        assert_eq!(a[4].name, "os");
        assert_eq!(
            attributes_v0_json(&a),
            r#"{"rack":"r1","slots":4.0,"zones":"{a, b}","range":"[1-20]","os":"linux5"}"#
        );
        // Only the first ':' separates name and value.
        let b = parse_attributes("url:http://x").unwrap();
        assert_eq!(b[0].text.as_ref().unwrap().value, "http://x");
        // Negative and non-finite numbers are text to Mesos.
        let c = parse_attributes("t:-1;n:nan;z:0").unwrap();
        assert_eq!(attributes_v0_json(&c), r#"{"t":"-1","n":"nan","z":0.0}"#);
        assert_eq!(attributes_v0_json(&[]), "{}");

        let e = parse_attributes("rack:r1;broken").unwrap_err().to_string();
        assert!(e.starts_with("invalid attribute 'broken': "), "{e}");
        let e = parse_attributes("zones:{a").unwrap_err().to_string();
        assert!(e.starts_with("invalid attribute 'zones:{a': "), "{e}");
        let e = parse_attributes("k:").unwrap_err().to_string();
        assert!(e.starts_with("invalid attribute 'k:': "), "{e}");
    }

    const ROLES: [&str; 3] = ["*", "dev", "ops"];
    const SCALARS: [&str; 3] = ["cpus", "mem", "gpus"];

    /// One resource entry before ownership is decided: scalar amounts (in thousandths) per
    /// (name, role, revocable), and a port/set-item universe whose members go to a, b or nobody.
    fn build(
        scalars: &[(usize, usize, bool, i64)],
        ports: &[(usize, u64)],
        items: &[(usize, u8)],
    ) -> Resources {
        // Alternate the pre- and post-refinement formats so that the two meet in the maths.
        let mut pre = false;
        let mut reserve = |mut r: Resource, role: &str| {
            pre = !pre;
            if role == "*" {
            } else if pre {
                #[allow(deprecated)]
                {
                    r.role = Some(role.into());
                }
            } else {
                r.reservations.push(resource::ReservationInfo {
                    r#type: Some(resource::reservation_info::Type::Static as i32),
                    role: Some(role.into()),
                    ..Default::default()
                });
            }
            r
        };
        let mut v = Vec::new();
        for &(n, role, rev, amount) in scalars {
            let mut r = reserve(helpers::scalar(SCALARS[n], from_fixed(amount)), ROLES[role]);
            if rev {
                r.revocable = Some(resource::RevocableInfo {});
            }
            v.push(r);
        }
        for &(role, port) in ports {
            v.push(reserve(helpers::ports(&[port]), ROLES[role]));
        }
        for &(role, item) in items {
            v.push(reserve(
                helpers::set("zones", &[format!("z{item}").as_str()]),
                ROLES[role],
            ));
        }
        Resources::from_vec(v)
    }

    type Scalars = Vec<(usize, usize, bool, i64)>;

    fn scalars() -> impl Strategy<Value = Scalars> {
        prop::collection::vec((0..3usize, 0..3usize, any::<bool>(), 0..100_000i64), 0..6)
    }

    /// Two resource sets whose ranges and sets are disjoint (scalars may share identities).
    fn disjoint_pair() -> impl Strategy<Value = (Resources, Resources)> {
        (
            scalars(),
            scalars(),
            prop::collection::vec(0..3u8, 0..40),
            prop::collection::vec(0..3u8, 0..8),
            0..3usize,
        )
            .prop_map(|(sa, sb, ports, items, role)| {
                let pick = |owner: u8| {
                    let p: Vec<(usize, u64)> = ports
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| **o == owner)
                        .map(|(i, _)| ((i % 2) * role, 31000 + i as u64))
                        .collect();
                    let s: Vec<(usize, u8)> = items
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| **o == owner)
                        .map(|(i, _)| (role, i as u8))
                        .collect();
                    (p, s)
                };
                let (pa, ia) = pick(1);
                let (pb, ib) = pick(2);
                (build(&sa, &pa, &ia), build(&sb, &pb, &ib))
            })
    }

    fn any_resources() -> impl Strategy<Value = Resources> {
        (
            scalars(),
            prop::collection::vec((0..2usize, 31000..31020u64), 0..10),
            prop::collection::vec((0..2usize, 0..5u8), 0..4),
        )
            .prop_map(|(s, p, i)| build(&s, &p, &i))
    }

    proptest! {
        #[test]
        fn add_then_subtract_is_identity((a, b) in disjoint_pair()) {
            let mut sum = a.clone();
            sum.add(&b);
            prop_assert!(sum.contains(&b));
            prop_assert!(sum.contains(&a));
            prop_assert_eq!(sum.checked_sub(&b), Some(a.clone()));
            let mut back = sum.clone();
            back.subtract(&b);
            prop_assert_eq!(&back, &a);
            // Addition commutes.
            let mut other = b.clone();
            other.add(&a);
            prop_assert_eq!(other, sum);
        }

        #[test]
        fn checked_sub_iff_contains(a in any_resources(), b in any_resources()) {
            let diff = a.checked_sub(&b);
            prop_assert_eq!(diff.is_some(), a.contains(&b));
            if let Some(d) = diff {
                prop_assert!(a.contains(&d));
                let mut back = d;
                back.add(&b);
                prop_assert_eq!(back, a.clone());
            }
            // Subtraction never leaves more than there was, and never anything of b's.
            let mut s = a.clone();
            s.subtract(&b);
            prop_assert!(a.contains(&s));
            prop_assert!(a.contains(&a) && Resources::new().checked_sub(&a).is_some() == a.is_empty());
        }

        #[test]
        fn text_form_round_trips(a in any_resources()) {
            // Revocable entries have no text form; the rest parse back to themselves.
            let plain = a.filter(|r| r.revocable.is_none());
            let text = plain.to_string();
            prop_assert_eq!(Resources::parse(&text).unwrap(), plain, "{}", text);
        }
    }
}
