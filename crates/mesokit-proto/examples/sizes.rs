//! Prints the in-memory size of the hot message types (owned and borrowed), to keep an eye on
//! what the boxing rule in `build/boxing.rs` produces.
use mesokit_proto::{borrowed, v1};
fn main() {
    macro_rules! s { ($($t:ty),*) => { $( println!("{:>6} {}", std::mem::size_of::<$t>(), stringify!($t)); )* } }
    s!(
        v1::Resource,
        v1::Offer,
        v1::TaskStatus,
        v1::TaskInfo,
        v1::scheduler::Event
    );
    s!(
        borrowed::v1::Resource<'static>,
        borrowed::v1::Offer<'static>,
        borrowed::v1::TaskStatus<'static>,
        borrowed::v1::TaskInfo<'static>,
        borrowed::v1::scheduler::Event<'static>,
        borrowed::v1::Attribute<'static>,
        borrowed::v1::Url<'static>
    );
}
