//! Hubble's gRPC messages, only the fields the agent reads, written with
//! prost's derive from Cilium's published API (`api/v1/observer/observer.proto`
//! and `api/v1/flow/flow.proto`, cilium/cilium). The tags are the .proto's
//! field numbers: a field left out here is skipped on decoding, so a newer
//! Relay with more fields stays readable. We found no maintained crate that
//! publishes these messages (docs.rs, November 2026), and generating them
//! from the .proto files would need `protoc` in the build.
//!
//! Also the one call the agent makes, `observer.Observer/GetFlows` (a
//! server stream), as tonic's generated client would make it.

use http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `observer.GetFlowsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetFlowsRequest {
    /// How many recent flows first; incompatible with `since`.
    #[prost(uint64, tag = "1")]
    pub number: u64,
    /// Keep streaming new flows.
    #[prost(bool, tag = "3")]
    pub follow: bool,
    #[prost(message, repeated, tag = "5")]
    pub blacklist: Vec<FlowFilter>,
    #[prost(message, repeated, tag = "6")]
    pub whitelist: Vec<FlowFilter>,
    /// Flows from this time on (a reconnection resumes here).
    #[prost(message, optional, tag = "7")]
    pub since: Option<Timestamp>,
}

/// `flow.FlowFilter`: the agent filters by node name only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FlowFilter {
    #[prost(string, repeated, tag = "24")]
    pub node_name: Vec<String>,
}

/// `observer.GetFlowsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetFlowsResponse {
    #[prost(oneof = "ResponseTypes", tags = "1, 3")]
    pub response_types: Option<ResponseTypes>,
    #[prost(string, tag = "1000")]
    pub node_name: String,
    #[prost(message, optional, tag = "1001")]
    pub time: Option<Timestamp>,
}

/// `GetFlowsResponse.response_types` (`node_status`, tag 2, is not read).
/// Unboxed: one response lives at a time, decoded and converted at once.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ResponseTypes {
    #[prost(message, tag = "1")]
    Flow(Flow),
    #[prost(message, tag = "3")]
    LostEvents(LostEvent),
}

/// `flow.LostEvent`: events Hubble itself lost before they reached us.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LostEvent {
    #[prost(int32, tag = "1")]
    pub source: i32,
    #[prost(uint64, tag = "2")]
    pub num_events_lost: u64,
}

/// `flow.Flow`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Flow {
    #[prost(message, optional, tag = "1")]
    pub time: Option<Timestamp>,
    /// `flow.Verdict`.
    #[prost(int32, tag = "2")]
    pub verdict: i32,
    #[prost(message, optional, tag = "5")]
    pub ip: Option<Ip>,
    #[prost(message, optional, tag = "6")]
    pub l4: Option<Layer4>,
    #[prost(message, optional, tag = "8")]
    pub source: Option<Endpoint>,
    #[prost(message, optional, tag = "9")]
    pub destination: Option<Endpoint>,
    /// `flow.FlowType`.
    #[prost(int32, tag = "10")]
    pub r#type: i32,
    #[prost(string, tag = "11")]
    pub node_name: String,
    #[prost(message, optional, tag = "15")]
    pub l7: Option<Layer7>,
    #[prost(message, optional, tag = "19")]
    pub event_type: Option<CiliumEventType>,
    #[prost(message, optional, tag = "20")]
    pub source_service: Option<Service>,
    #[prost(message, optional, tag = "21")]
    pub destination_service: Option<Service>,
    /// `flow.TrafficDirection`.
    #[prost(int32, tag = "22")]
    pub traffic_direction: i32,
    /// `google.protobuf.BoolValue`: absent means unknown, never false.
    #[prost(message, optional, tag = "26")]
    pub is_reply: Option<bool>,
}

/// `flow.Endpoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Endpoint {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub identity: u32,
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// `k8s:key=value`, `reserved:world`, …
    #[prost(string, repeated, tag = "4")]
    pub labels: Vec<String>,
    #[prost(string, tag = "5")]
    pub pod_name: String,
    #[prost(message, repeated, tag = "6")]
    pub workloads: Vec<Workload>,
}

/// `flow.Workload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Workload {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub kind: String,
}

/// `flow.Service`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Service {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
}

/// `flow.IP`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ip {
    #[prost(string, tag = "1")]
    pub source: String,
    #[prost(string, tag = "2")]
    pub destination: String,
}

/// `flow.Layer4`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Layer4 {
    #[prost(oneof = "Protocol", tags = "1, 2, 3, 4, 5")]
    pub protocol: Option<Protocol>,
}

/// `Layer4.protocol`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Protocol {
    #[prost(message, tag = "1")]
    Tcp(Tcp),
    #[prost(message, tag = "2")]
    Udp(Ports),
    #[prost(message, tag = "3")]
    IcmpV4(Icmp),
    #[prost(message, tag = "4")]
    IcmpV6(Icmp),
    #[prost(message, tag = "5")]
    Sctp(Ports),
}

/// `flow.TCP`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tcp {
    #[prost(uint32, tag = "1")]
    pub source_port: u32,
    #[prost(uint32, tag = "2")]
    pub destination_port: u32,
    #[prost(message, optional, tag = "3")]
    pub flags: Option<TcpFlags>,
}

/// `flow.UDP` and `flow.SCTP` (the same two fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ports {
    #[prost(uint32, tag = "1")]
    pub source_port: u32,
    #[prost(uint32, tag = "2")]
    pub destination_port: u32,
}

/// `flow.ICMPv4` and `flow.ICMPv6`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Icmp {
    #[prost(uint32, tag = "1")]
    pub r#type: u32,
    #[prost(uint32, tag = "2")]
    pub code: u32,
}

/// `flow.TCPFlags`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TcpFlags {
    #[prost(bool, tag = "1")]
    pub fin: bool,
    #[prost(bool, tag = "2")]
    pub syn: bool,
    #[prost(bool, tag = "3")]
    pub rst: bool,
    #[prost(bool, tag = "4")]
    pub psh: bool,
    #[prost(bool, tag = "5")]
    pub ack: bool,
    #[prost(bool, tag = "6")]
    pub urg: bool,
    #[prost(bool, tag = "7")]
    pub ece: bool,
    #[prost(bool, tag = "8")]
    pub cwr: bool,
    #[prost(bool, tag = "9")]
    pub ns: bool,
}

/// `flow.Layer7` (only its DNS record is read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Layer7 {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "100")]
    pub dns: Option<Dns>,
}

/// `flow.DNS`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dns {
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(string, repeated, tag = "2")]
    pub ips: Vec<String>,
}

/// `flow.CiliumEventType`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct CiliumEventType {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(int32, tag = "2")]
    pub sub_type: i32,
}

/// The method's path, as the .proto's package, service and rpc name it.
pub const GET_FLOWS: &str = "/observer.Observer/GetFlows";

/// Calls `GetFlows` and returns the stream of responses.
pub async fn get_flows(
    channel: Channel,
    request: GetFlowsRequest,
) -> Result<tonic::Streaming<GetFlowsResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("Hubble Relay is not ready: {e}")))?;
    let response = grpc
        .server_streaming(
            tonic::Request::new(request),
            PathAndQuery::from_static(GET_FLOWS),
            tonic_prost::ProstCodec::default(),
        )
        .await?;
    Ok(response.into_inner())
}

#[cfg(test)]
mod tests {
    //! Wire bytes worked out by hand from the .proto field numbers (key =
    //! field number << 3 | wire type), so a wrong tag cannot hide behind a
    //! round trip through our own encoder and decoder.
    use prost::Message;

    use super::*;

    #[test]
    fn is_reply_is_field_26_a_bool_value() {
        let flow = Flow {
            is_reply: Some(true),
            ..Flow::default()
        };
        assert_eq!(flow.encode_to_vec(), [0xD2, 0x01, 0x02, 0x08, 0x01]);
        // Absent is absent, not false.
        assert_eq!(Flow::decode(&[][..]).ok().and_then(|f| f.is_reply), None);
    }

    #[test]
    fn udp_port_is_l4_field_6_then_udp_field_2() {
        let flow = Flow {
            l4: Some(Layer4 {
                protocol: Some(Protocol::Udp(Ports {
                    source_port: 0,
                    destination_port: 53,
                })),
            }),
            ..Flow::default()
        };
        assert_eq!(flow.encode_to_vec(), [0x32, 0x04, 0x12, 0x02, 0x10, 0x35]);
    }

    #[test]
    fn response_node_name_is_field_1000_and_follow_is_field_3() {
        let response = GetFlowsResponse {
            node_name: "n".to_string(),
            ..GetFlowsResponse::default()
        };
        assert_eq!(response.encode_to_vec(), [0xC2, 0x3E, 0x01, b'n']);
        let request = GetFlowsRequest {
            follow: true,
            ..GetFlowsRequest::default()
        };
        assert_eq!(request.encode_to_vec(), [0x18, 0x01]);
    }

    #[test]
    fn fields_a_newer_relay_adds_are_skipped() {
        // Field 34 (uuid, a string we do not read) then verdict 1.
        let bytes = [0x92, 0x02, 0x01, b'x', 0x10, 0x01];
        let flow = Flow::decode(&bytes[..]).map_err(|e| e.to_string());
        assert_eq!(flow.map(|f| f.verdict), Ok(1));
    }
}
