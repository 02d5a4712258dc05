//! Starting a master and agents on sockets and tasks.
