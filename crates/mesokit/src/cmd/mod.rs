//! One module per subcommand.

pub(crate) mod decode;
pub(crate) mod executor;
pub(crate) mod hook;
pub(crate) mod json;
pub(crate) mod local;
pub(crate) mod run;
pub(crate) mod status;
