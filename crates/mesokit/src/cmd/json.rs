//! A JSON object on one line, for `--json` outputs, written with the Mesos JSON writer.

use mesokit_proto::json::Writer;

#[derive(Debug)]
enum Field {
    Str(String),
    Num(f64),
    Int(u64),
    Bool(bool),
}

/// Collects fields, then writes `{"key":value,...}`.
#[derive(Debug, Default)]
pub(crate) struct JsonLine {
    fields: Vec<(String, Field)>,
}

impl JsonLine {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.fields.push((key.into(), Field::Str(value.into())));
    }

    pub(crate) fn num(&mut self, key: &str, value: f64) {
        self.fields.push((key.into(), Field::Num(value)));
    }

    pub(crate) fn int(&mut self, key: &str, value: u64) {
        self.fields.push((key.into(), Field::Int(value)));
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.fields.push((key.into(), Field::Bool(value)));
    }

    pub(crate) fn finish(self) -> String {
        let mut buf = Vec::with_capacity(128);
        let mut w = Writer::new(&mut buf);
        w.begin_object();
        for (k, v) in &self.fields {
            w.map_key(k);
            match v {
                Field::Str(s) => w.string(s),
                Field::Num(n) => w.f64(*n),
                Field::Int(n) => w.u64(*n),
                Field::Bool(b) => w.bool(*b),
            }
        }
        w.end_object();
        String::from_utf8(buf).unwrap_or_default()
    }
}
