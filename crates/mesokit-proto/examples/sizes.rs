use mesokit_proto::v1::*;
fn main() {
    macro_rules! s { ($($t:ty),*) => { $( println!("{:>6} {}", std::mem::size_of::<$t>(), stringify!($t)); )* } }
    s!(
        Resource,
        resource::DiskInfo,
        resource::ReservationInfo,
        Offer,
        TaskStatus,
        TaskInfo,
        ContainerStatus,
        Volume,
        Image,
        ContainerInfo,
        ExecutorInfo,
        CommandInfo,
        HealthCheck,
        CheckInfo,
        DiscoveryInfo,
        Url,
        Address,
        Attribute,
        Value,
        scheduler::Event,
        DomainInfo,
        NetworkInfo,
        Labels,
        Secret
    );
}
