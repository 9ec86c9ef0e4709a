//! Hubble flow files → core [`Flow`] records, streamed.
//!
//! Reads what `hubble observe` writes: `-o jsonpb` lines
//! (`{"flow": {…}, "node_name": …, "time": …}`) and the bare Flow objects of
//! `-o json`, one per line, or a JSON array of either; gzip-compressed files
//! are recognised by their magic bytes. Other records of the same stream
//! (`node_status`, `lost_events`) are skipped and counted.
//!
//! It lives in kubefence-k8s because it is an adapter from an external wire
//! format to the core model, like the manifest loader beside it; the CLI,
//! the benchmarks and a future operator controller read flows through it.
//!
//! Memory stays constant whatever the file size: [`FlowReader`] is an
//! iterator that holds one record at a time (a line, or one element of an
//! array found by a small scanner), parses it with borrowed strings, and
//! caps a record at [`MAX_RECORD_BYTES`]. A record that is not JSON, or
//! whose fields have the wrong type, is an error naming the file and line;
//! reading goes on with the next record. Fields Hubble may leave out are
//! `None` (absent `is_reply` is unknown, not false); enum values this
//! version does not know are kept, never a panic. Field names are Hubble's
//! (`source_port`); protojson's camelCase spellings (`sourcePort`) are read
//! too, and enums may be names or numbers.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use kubefence_core::Protocol;
use kubefence_core::learn::flows::{
    DnsRecord, Flow, FlowEndpoint, FlowEvent, FlowService, FlowType, FlowWorkload,
    ReservedIdentity, TcpFlags, TrafficDirection, Verdict,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The largest record read (a longer line is an error and is skipped).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// A record that could not be read, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowError {
    pub file: String,
    /// 1-based line where the record starts.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for FlowError {}

/// Opens a flow file (gzip or plain); `-` is stdin.
pub fn open(path: &str) -> io::Result<FlowReader<Box<dyn BufRead>>> {
    let reader: Box<dyn Read> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(Path::new(path))?)
    };
    let label = if path == "-" { "<stdin>" } else { path };
    from_reader(reader, label)
}

/// Reads flows from any reader (gzip detected from the first bytes).
pub fn from_reader<R: Read + 'static>(
    reader: R,
    label: &str,
) -> io::Result<FlowReader<Box<dyn BufRead>>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(FlowReader::new(inner, label))
}

/// How the records of a stream are laid out, known from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Unknown,
    /// One JSON object per line (jsonpb or json).
    Lines,
    /// One JSON array of objects.
    Array,
    /// The array's closing bracket was read (or the scanner gave up).
    Done,
}

/// The flows of one stream, one at a time.
pub struct FlowReader<R> {
    reader: R,
    label: String,
    layout: Layout,
    /// Lines consumed so far (the next line is `line + 1`).
    line: usize,
    buffer: Vec<u8>,
    /// Records that were not flows (`node_status`, `lost_events`).
    pub skipped_records: u64,
}

impl<R: BufRead> FlowReader<R> {
    pub fn new(reader: R, label: &str) -> Self {
        Self {
            reader,
            label: label.to_string(),
            layout: Layout::Unknown,
            line: 0,
            buffer: Vec::with_capacity(4096),
            skipped_records: 0,
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> FlowError {
        FlowError {
            file: self.label.clone(),
            line,
            message: message.into(),
        }
    }

    /// Skips whitespace (counting lines) and returns the next byte, unread.
    fn peek_non_space(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut used = 0;
            let mut found = None;
            for &b in buf {
                if b.is_ascii_whitespace() {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    used += 1;
                } else {
                    found = Some(b);
                    break;
                }
            }
            self.reader.consume(used);
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// The next line into `buffer` (without its newline); `None` at the
    /// end. A line over the limit is consumed and reported.
    fn next_line(&mut self) -> Option<Result<usize, FlowError>> {
        loop {
            self.buffer.clear();
            let limit = (MAX_RECORD_BYTES + 1) as u64;
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buffer);
            match read {
                Err(e) => {
                    let line = self.line + 1;
                    self.layout = Layout::Done;
                    return Some(Err(self.error(line, format!("cannot read: {e}"))));
                }
                Ok(0) => return None,
                Ok(_) => {}
            }
            self.line += 1;
            let line = self.line;
            if self.buffer.last() == Some(&b'\n') {
                self.buffer.pop();
            } else if self.buffer.len() > MAX_RECORD_BYTES {
                // Skip the rest of the overlong line without keeping it.
                if let Err(e) = skip_line(&mut self.reader) {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(line, format!("cannot read: {e}"))));
                }
                return Some(Err(self.error(
                    line,
                    format!("record longer than {MAX_RECORD_BYTES} bytes: skipped"),
                )));
            }
            if self.buffer.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(line));
        }
    }

    /// The next element of a JSON array into `buffer`; `None` after `]`.
    fn next_element(&mut self) -> Option<Result<usize, FlowError>> {
        // Between elements: whitespace, a comma, or the closing bracket.
        loop {
            match self.peek_non_space() {
                Err(e) => {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(self.line + 1, format!("cannot read: {e}"))));
                }
                Ok(None) => {
                    self.layout = Layout::Done;
                    return Some(Err(
                        self.error(self.line + 1, "the JSON array is not closed (`]` missing)")
                    ));
                }
                Ok(Some(b',')) => self.reader.consume(1),
                Ok(Some(b']')) => {
                    self.reader.consume(1);
                    self.layout = Layout::Done;
                    return None;
                }
                Ok(Some(_)) => break,
            }
        }
        let start = self.line + 1;
        self.buffer.clear();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(start, format!("cannot read: {e}"))));
                }
            };
            if buf.is_empty() {
                self.layout = Layout::Done;
                return Some(Err(self.error(start, "the file ends inside a record")));
            }
            let mut used = 0;
            let mut complete = false;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    self.line += 1;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        if depth == 0 {
                            // A bracket closing the array right after a comma.
                            used -= 1;
                            complete = true;
                            break;
                        }
                        depth -= 1;
                        if depth == 0 {
                            complete = true;
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        used -= 1;
                        complete = true;
                        break;
                    }
                    _ => {}
                }
            }
            self.buffer.extend_from_slice(&buf[..used]);
            self.reader.consume(used);
            if self.buffer.len() > MAX_RECORD_BYTES {
                self.layout = Layout::Done;
                return Some(Err(self.error(
                    start,
                    format!("record longer than {MAX_RECORD_BYTES} bytes: the rest of the array is not read"),
                )));
            }
            if complete {
                return Some(Ok(start));
            }
        }
    }
}

impl<R: BufRead> FlowReader<R> {
    /// Reads the stream to its end and hands every flow, and every record
    /// that could not be read, to `visit`, in the order of the stream:
    /// exactly what the iterator gives, but each flow borrows its text from
    /// the reader's buffer instead of owning it, so no string of a record
    /// is copied. Each record is parsed and visited right after it is read,
    /// while it is still in the cache.
    pub fn for_each_flow(&mut self, mut visit: impl FnMut(Result<&Flow<'_>, FlowError>)) {
        loop {
            if self.layout == Layout::Unknown {
                match self.peek_non_space() {
                    Ok(Some(b'[')) => {
                        self.reader.consume(1);
                        self.layout = Layout::Array;
                    }
                    Ok(Some(_)) => self.layout = Layout::Lines,
                    Ok(None) => return,
                    Err(e) => {
                        self.layout = Layout::Done;
                        visit(Err(self.error(self.line + 1, format!("cannot read: {e}"))));
                        return;
                    }
                }
            }
            let record = match self.layout {
                Layout::Lines => self.next_line(),
                Layout::Array => self.next_element(),
                Layout::Unknown | Layout::Done => None,
            };
            let line = match record {
                None => return,
                Some(Err(e)) => {
                    visit(Err(e));
                    continue;
                }
                Some(Ok(line)) => line,
            };
            match parse_record(&self.buffer) {
                Ok(Some(flow)) => visit(Ok(&flow)),
                Ok(None) => self.skipped_records += 1,
                Err(message) => visit(Err(FlowError {
                    file: self.label.clone(),
                    line,
                    message,
                })),
            }
        }
    }
}

fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

impl<R: BufRead> Iterator for FlowReader<R> {
    type Item = Result<Flow<'static>, FlowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.layout == Layout::Unknown {
                match self.peek_non_space() {
                    Ok(Some(b'[')) => {
                        self.reader.consume(1);
                        self.layout = Layout::Array;
                    }
                    Ok(Some(_)) => self.layout = Layout::Lines,
                    Ok(None) => return None,
                    Err(e) => {
                        self.layout = Layout::Done;
                        return Some(Err(self.error(self.line + 1, format!("cannot read: {e}"))));
                    }
                }
            }
            let record = match self.layout {
                Layout::Lines => self.next_line(),
                Layout::Array => self.next_element(),
                Layout::Unknown | Layout::Done => None,
            }?;
            let line = match record {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            match parse_record(&self.buffer) {
                Ok(Some(flow)) => return Some(Ok(flow.into_owned())),
                Ok(None) => self.skipped_records += 1,
                Err(message) => return Some(Err(self.error(line, message))),
            }
        }
    }
}

/// One record: a flow, `None` for another kind of record, or why it is
/// not readable. The flow borrows its text from `bytes` where no JSON
/// escape stood in the way.
pub fn parse_record(bytes: &[u8]) -> Result<Option<Flow<'_>>, String> {
    let mut record: HubbleFlow<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("not JSON: {e}")
        } else {
            format!("not a Hubble flow: {e}")
        }
    })?;
    let flow = match record.flow.take() {
        Some(inner) => {
            let mut flow = to_flow(*inner)?;
            if flow.time.is_none() {
                flow.time = record.time.map(|t| t.0);
            }
            flow
        }
        // The record is the flow itself (`-o json`).
        None if record.is_flow() => to_flow(record)?,
        None => return Ok(None),
    };
    Ok(Some(flow))
}

/// Hubble's enum values in number order (flow.proto): a number read from
/// JSON or from the gRPC stream is named by its index here.
pub const VERDICTS: &[&str] = &[
    "VERDICT_UNKNOWN",
    "FORWARDED",
    "DROPPED",
    "ERROR",
    "AUDIT",
    "REDIRECTED",
    "TRACED",
    "TRANSLATED",
];
pub const DIRECTIONS: &[&str] = &["TRAFFIC_DIRECTION_UNKNOWN", "INGRESS", "EGRESS"];
pub const FLOW_TYPES: &[&str] = &["UNKNOWN_TYPE", "L3_L4", "L7", "SOCK"];

/// An `l4` port: 0 is none (proto3's zero, or absent).
pub fn l4_port(number: u32, field: &str) -> Result<Option<u16>, String> {
    match number {
        0 => Ok(None),
        n => u16::try_from(n)
            .map(Some)
            .map_err(|_| format!("l4: {field} {n} is not a port")),
    }
}

/// An endpoint's `IP.source` / `IP.destination`; empty is none.
pub fn endpoint_ip(text: Option<&str>, field: &str) -> Result<Option<IpAddr>, String> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<IpAddr>()
            .map(Some)
            .map_err(|_| format!("{field}: {text:?} is not an IP address")),
    }
}

/// The addresses of an `l7.dns` answer.
pub fn dns_ips<'t>(texts: impl IntoIterator<Item = &'t str>) -> Result<Vec<IpAddr>, String> {
    texts
        .into_iter()
        .map(|text| {
            text.parse::<IpAddr>()
                .map_err(|_| format!("l7.dns.ips: {text:?} is not an IP address"))
        })
        .collect()
}

/// Hubble's `traffic_direction` by name.
pub fn traffic_direction(name: &str) -> TrafficDirection {
    match name {
        "INGRESS" => TrafficDirection::Ingress,
        "EGRESS" => TrafficDirection::Egress,
        other => TrafficDirection::Unknown(other.to_string()),
    }
}

/// Hubble's `verdict` by name.
pub fn verdict(name: &str) -> Verdict {
    match name {
        "FORWARDED" => Verdict::Forwarded,
        "DROPPED" => Verdict::Dropped,
        "ERROR" => Verdict::Error,
        "AUDIT" => Verdict::Audit,
        "REDIRECTED" => Verdict::Redirected,
        "TRACED" => Verdict::Traced,
        "TRANSLATED" => Verdict::Translated,
        other => Verdict::Other(other.to_string()),
    }
}

/// Hubble's `Type` by name.
pub fn flow_type(name: &str) -> FlowType {
    match name {
        "L3_L4" => FlowType::L3L4,
        "L7" => FlowType::L7,
        "SOCK" => FlowType::Sock,
        other => FlowType::Other(other.to_string()),
    }
}

/// The name of enum value `number` in `names` (one of [`VERDICTS`],
/// [`DIRECTIONS`], [`FLOW_TYPES`]), or its digits when this version does
/// not know it.
pub fn enum_name(number: i64, names: &'static [&'static str]) -> Cow<'static, str> {
    usize::try_from(number)
        .ok()
        .and_then(|i| names.get(i))
        .map_or_else(
            || Cow::Owned(number.to_string()),
            |name| Cow::Borrowed(*name),
        )
}

/// A pod label, `(key, value)`.
pub type Label<'a> = (Cow<'a, str>, Cow<'a, str>);

/// An endpoint's Hubble labels split into the pod's Kubernetes labels
/// (`k8s:key=value`, sorted) and Cilium's reserved identities
/// (`reserved:name`, sorted, once each). Labels of other sources
/// (`container:`, `cidr:`, `fqdn:`, `unspec:`) say nothing a
/// NetworkPolicy can select on and are dropped.
pub fn endpoint_labels<'a>(
    hubble_labels: impl IntoIterator<Item = Cow<'a, str>>,
) -> (Vec<Label<'a>>, Vec<ReservedIdentity>) {
    let mut labels = Vec::new();
    let mut reserved = Vec::new();
    for label in hubble_labels {
        if label.starts_with("k8s:") {
            labels.push(k8s_label(label));
        } else if let Some(name) = label.strip_prefix("reserved:") {
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            reserved.push(ReservedIdentity::parse(name));
        }
    }
    labels.sort();
    reserved.sort();
    reserved.dedup();
    (labels, reserved)
}

fn to_flow(f: HubbleFlow<'_>) -> Result<Flow<'_>, String> {
    let (ip_source, ip_destination) = f.ip.map_or((None, None), |i| (i.source, i.destination));
    let source = endpoint(f.source, ip_source, "IP.source", f.source_service)?;
    let destination = endpoint(
        f.destination,
        ip_destination,
        "IP.destination",
        f.destination_service,
    )?;
    let (protocol, ports, tcp_flags) = match &f.l4 {
        Some(L4 { tcp: Some(t), .. }) => (
            Some(Protocol::Tcp),
            Some(Ports {
                source_port: t.source_port,
                destination_port: t.destination_port,
            }),
            t.flags.as_ref().map(|f| f.to_core()),
        ),
        Some(L4 { udp: Some(u), .. }) => (Some(Protocol::Udp), Some(*u), None),
        Some(L4 { sctp: Some(s), .. }) => (Some(Protocol::Sctp), Some(*s), None),
        _ => (None, None, None),
    };
    let port = |p: Option<u32>, field: &str| l4_port(p.unwrap_or(0), field);
    let dns = match f.l7.and_then(|l| l.dns) {
        None => None,
        Some(d) => Some(DnsRecord {
            query: d.query.map_or(Cow::Borrowed(""), |q| q.0),
            ips: dns_ips(d.ips.iter().flatten().map(|t| &**t))?,
        }),
    };
    Ok(Flow {
        time: f.time.map(|t| t.0),
        source,
        destination,
        protocol,
        source_port: port(ports.and_then(|p| p.source_port), "source_port")?,
        destination_port: port(ports.and_then(|p| p.destination_port), "destination_port")?,
        tcp_flags,
        is_reply: f.is_reply.map(|b| b.0),
        traffic_direction: f
            .traffic_direction
            .as_ref()
            .map(|d| traffic_direction(&d.name(DIRECTIONS))),
        verdict: f.verdict.as_ref().map(|v| verdict(&v.name(VERDICTS))),
        flow_type: f.type_.as_ref().map(|t| flow_type(&t.name(FLOW_TYPES))),
        event: f
            .event_type
            .as_ref()
            .and_then(|e| e.type_)
            .map(FlowEvent::from_monitor_type),
        dns,
    })
}

/// A text field, `None` when absent or empty.
fn non_empty(text: Option<Str<'_>>) -> Option<Cow<'_, str>> {
    text.map(|t| t.0).filter(|t| !t.is_empty())
}

fn endpoint<'a>(
    e: Option<Endpoint<'a>>,
    ip: Option<Str<'a>>,
    ip_field: &str,
    service: Option<Service<'a>>,
) -> Result<FlowEndpoint<'a>, String> {
    let service = service
        .and_then(|s| Some((non_empty(s.namespace)?, non_empty(s.name)?)))
        .map(|(namespace, name)| FlowService { namespace, name });
    let ip = endpoint_ip(ip.as_deref(), ip_field)?;
    let Some(e) = e else {
        return Ok(FlowEndpoint {
            ip,
            service,
            ..FlowEndpoint::default()
        });
    };
    let (labels, reserved) = endpoint_labels(e.labels.into_iter().flatten().map(|Str(l)| l));
    Ok(FlowEndpoint {
        namespace: non_empty(e.namespace),
        labels,
        reserved,
        pod_name: non_empty(e.pod_name),
        workloads: e
            .workloads
            .into_iter()
            .flatten()
            .map(|w| FlowWorkload {
                name: w.name.map_or(Cow::Borrowed(""), |n| n.0),
                kind: w.kind.map_or(Cow::Borrowed(""), |k| k.0),
            })
            .collect(),
        identity: e.identity,
        ip,
        service,
    })
}

/// `k8s:key=value` (the caller checked the prefix) as `(key, value)`,
/// borrowed from the record when the label was.
fn k8s_label(label: Cow<'_, str>) -> (Cow<'_, str>, Cow<'_, str>) {
    fn split(text: &str) -> (&str, &str) {
        let rest = text.strip_prefix("k8s:").unwrap_or(text);
        rest.split_once('=').unwrap_or((rest, ""))
    }
    match label {
        Cow::Borrowed(text) => {
            let (key, value) = split(text);
            (Cow::Borrowed(key), Cow::Borrowed(value))
        }
        Cow::Owned(text) => {
            let (key, value) = split(&text);
            (Cow::Owned(key.to_string()), Cow::Owned(value.to_string()))
        }
    }
}

// ---- Hubble's JSON, borrowed where it can be ----

#[derive(Deserialize)]
struct HubbleFlow<'a> {
    /// Set on a jsonpb line: the flow inside the GetFlowsResponse.
    #[serde(borrow, default)]
    flow: Option<Box<HubbleFlow<'a>>>,
    #[serde(borrow, default)]
    time: Option<Str<'a>>,
    #[serde(default)]
    verdict: Option<EnumValue<'a>>,
    #[serde(rename = "IP", alias = "ip", borrow, default)]
    ip: Option<Ip<'a>>,
    #[serde(default)]
    l4: Option<L4>,
    #[serde(borrow, default)]
    source: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    destination: Option<Endpoint<'a>>,
    #[serde(rename = "Type", alias = "type", default)]
    type_: Option<EnumValue<'a>>,
    #[serde(alias = "trafficDirection", default)]
    traffic_direction: Option<EnumValue<'a>>,
    #[serde(alias = "isReply", default)]
    is_reply: Option<BoolValue>,
    #[serde(alias = "eventType", default)]
    event_type: Option<EventType>,
    #[serde(borrow, default)]
    l7: Option<L7<'a>>,
    #[serde(alias = "sourceService", borrow, default)]
    source_service: Option<Service<'a>>,
    #[serde(alias = "destinationService", borrow, default)]
    destination_service: Option<Service<'a>>,
}

#[derive(Deserialize)]
struct Service<'a> {
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    #[serde(borrow, default)]
    namespace: Option<Str<'a>>,
}

impl HubbleFlow<'_> {
    /// Whether the record is a flow at all (a GetFlowsResponse may carry a
    /// node status or lost-events notice instead).
    fn is_flow(&self) -> bool {
        self.ip.is_some()
            || self.l4.is_some()
            || self.source.is_some()
            || self.destination.is_some()
    }
}

#[derive(Deserialize)]
struct Ip<'a> {
    #[serde(borrow, default)]
    source: Option<Str<'a>>,
    #[serde(borrow, default)]
    destination: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct L4 {
    #[serde(rename = "TCP", alias = "tcp", default)]
    tcp: Option<Tcp>,
    #[serde(rename = "UDP", alias = "udp", default)]
    udp: Option<Ports>,
    #[serde(rename = "SCTP", alias = "sctp", default)]
    sctp: Option<Ports>,
}

#[derive(Deserialize, Clone, Copy)]
struct Ports {
    #[serde(alias = "sourcePort", default)]
    source_port: Option<u32>,
    #[serde(alias = "destinationPort", default)]
    destination_port: Option<u32>,
}

#[derive(Deserialize)]
struct Tcp {
    #[serde(alias = "sourcePort", default)]
    source_port: Option<u32>,
    #[serde(alias = "destinationPort", default)]
    destination_port: Option<u32>,
    #[serde(default)]
    flags: Option<TcpFlagsJson>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
struct TcpFlagsJson {
    #[serde(default)]
    fin: bool,
    #[serde(default)]
    syn: bool,
    #[serde(default)]
    rst: bool,
    #[serde(default)]
    psh: bool,
    #[serde(default)]
    ack: bool,
    #[serde(default)]
    urg: bool,
    #[serde(default)]
    ece: bool,
    #[serde(default)]
    cwr: bool,
    #[serde(default)]
    ns: bool,
}

impl TcpFlagsJson {
    fn to_core(&self) -> TcpFlags {
        TcpFlags {
            syn: self.syn,
            ack: self.ack,
            fin: self.fin,
            rst: self.rst,
            psh: self.psh,
            urg: self.urg,
            ece: self.ece,
            cwr: self.cwr,
            ns: self.ns,
        }
    }
}

#[derive(Deserialize)]
struct Endpoint<'a> {
    #[serde(borrow, default)]
    namespace: Option<Str<'a>>,
    #[serde(borrow, default)]
    labels: Option<Vec<Str<'a>>>,
    #[serde(alias = "podName", borrow, default)]
    pod_name: Option<Str<'a>>,
    #[serde(borrow, default)]
    workloads: Option<Vec<WorkloadJson<'a>>>,
    #[serde(default)]
    identity: Option<u32>,
}

#[derive(Deserialize)]
struct WorkloadJson<'a> {
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct EventType {
    #[serde(rename = "type", default)]
    type_: Option<u32>,
}

#[derive(Deserialize)]
struct L7<'a> {
    #[serde(borrow, default)]
    dns: Option<Dns<'a>>,
}

#[derive(Deserialize)]
struct Dns<'a> {
    #[serde(borrow, default)]
    query: Option<Str<'a>>,
    #[serde(borrow, default)]
    ips: Option<Vec<Str<'a>>>,
}

/// A JSON string, borrowed from the record when it has no escape (owned
/// when it has). serde's own `Cow<str>` always allocates when it sits in an
/// `Option` or a `Vec`, and allocating every string of every record was
/// most of the reading time.
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A protobuf enum as protojson writes it: its name, or its number.
enum EnumValue<'a> {
    Name(Cow<'a, str>),
    Number(i64),
}

impl EnumValue<'_> {
    /// The name; a number is named from `names` (the enum's values in
    /// order), or kept as its digits when this version does not know it.
    fn name(&self, names: &'static [&'static str]) -> Cow<'_, str> {
        match self {
            Self::Name(n) => Cow::Borrowed(n),
            Self::Number(n) => enum_name(*n, names),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EnumValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnumValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(EnumValue::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EnumValue::Name(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(EnumValue::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(EnumValue::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A `google.protobuf.BoolValue`: `true` in protojson, `{"value": true}`
/// from Go's encoding/json.
#[derive(Clone, Copy)]
struct BoolValue(bool);

impl<'de> Deserialize<'de> for BoolValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BoolValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or {\"value\": boolean}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(BoolValue(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "value" {
                        value = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(BoolValue(value))
            }
        }
        deserializer.deserialize_any(V)
    }
}
