//! One module per subcommand.

pub(crate) mod decode;
pub(crate) mod executor;
pub(crate) mod hook;
pub(crate) mod local;
