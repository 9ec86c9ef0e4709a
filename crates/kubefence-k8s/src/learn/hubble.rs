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
use kubefence_core::learn::{EndpointHint, Learner};
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
    /// An error found while reading a block, reported after it.
    pending_error: Option<FlowError>,
    /// How many bytes of records [`FlowReader::fold_parallel`] hands a
    /// worker at a time.
    block_bytes: usize,
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
            pending_error: None,
            block_bytes: BLOCK_BYTES,
        }
    }

    /// Blocks of `bytes` (at least 1) for [`FlowReader::fold_parallel`]
    /// instead of [`BLOCK_BYTES`]: small blocks make the tests cut a small
    /// file into many.
    pub fn with_block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes.max(1);
        self
    }

    fn error(&self, line: usize, message: impl Into<String>) -> FlowError {
        FlowError {
            file: self.label.clone(),
            line,
            message: message.into(),
        }
    }

    /// Learns how the stream is laid out from its first byte that is not
    /// whitespace, once; `Ok(false)` when the stream holds nothing.
    fn detect_layout(&mut self) -> Result<bool, FlowError> {
        if self.layout != Layout::Unknown {
            return Ok(true);
        }
        match self.peek_non_space() {
            Ok(Some(b'[')) => {
                self.reader.consume(1);
                self.layout = Layout::Array;
                Ok(true)
            }
            Ok(Some(_)) => {
                self.layout = Layout::Lines;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.layout = Layout::Done;
                Err(self.error(self.line + 1, format!("cannot read: {e}")))
            }
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
            match self.detect_layout() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    visit(Err(e));
                    return;
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

/// How many bytes of whole records the reader hands a worker at a time
/// ([`FlowReader::fold_parallel`]): large enough that handing over costs
/// nothing next to parsing, small enough that the blocks in flight stay a
/// few megabytes.
pub const BLOCK_BYTES: usize = 1024 * 1024;

/// Records of one stream for one worker: whole lines, or the elements of
/// a JSON array with the line each starts on.
struct Block {
    seq: u64,
    bytes: Vec<u8>,
    layout: BlockLayout,
}

enum BlockLayout {
    /// Whole lines; the first is line `first_line` (1-based).
    Lines { first_line: usize },
    /// Array elements: the line each starts on and its bytes.
    Elements(Vec<(usize, std::ops::Range<usize>)>),
}

/// What a worker found in one block, given back in stream order.
struct BlockDone {
    seq: u64,
    /// The block's buffer, for the reader to fill again.
    bytes: Vec<u8>,
    /// Flows and unreadable records (what [`FlowReader::for_each_flow`]
    /// visits).
    records: u64,
    skipped: u64,
    errors: Vec<FlowError>,
}

impl<R: BufRead> FlowReader<R> {
    /// Folds every flow of the stream into `learner`, read on `workers`
    /// threads ([`FlowReader::fold_parallel`], each with its own learner
    /// and its endpoint hints); returns the records read (flows and
    /// unreadable records, which go to `on_error` in stream order). What
    /// `kubefence learn` and `verify`, the benchmark and the profiling
    /// example all run.
    pub fn learn_into(
        &mut self,
        learner: &mut Learner,
        workers: usize,
        on_error: impl FnMut(FlowError),
    ) -> u64 {
        let folded = self.fold_parallel(
            workers,
            Learner::new,
            |learner, flow, hints| learner.observe_hinted(flow, hints.source, hints.destination),
            Learner::merge,
            on_error,
        );
        learner.merge(folded.state);
        folded.records
    }
}

/// How many threads [`FlowReader::fold_parallel`] should use here: one per
/// core, at most 8 (past that, reading one stream is the bottleneck).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// What [`FlowReader::fold_parallel`] read.
#[derive(Debug)]
pub struct Folded<S> {
    /// Every worker's state, merged.
    pub state: S,
    /// Flows and unreadable records: what `for_each_flow` would visit.
    pub records: u64,
}

impl<R: BufRead> FlowReader<R> {
    /// Reads the stream to its end as [`FlowReader::for_each_flow`] does,
    /// but parses and folds on `workers` threads: this thread reads whole
    /// records in blocks of a few megabytes and hands each block to a
    /// worker, which parses its flows and folds each into its own state
    /// (`init` makes one per worker, `observe` folds a flow in, with the
    /// worker's [`EndpointHints`] for it); the
    /// states are merged at the end (`merge`), so the fold must not depend
    /// on the order of the flows. Unreadable records go to `on_error` in
    /// the order of the stream, with their line. Memory is bounded by the
    /// blocks in flight (two per worker), whatever the size of the stream.
    pub fn fold_parallel<S: Send>(
        &mut self,
        workers: usize,
        init: impl Fn() -> S + Sync,
        observe: impl Fn(&mut S, &Flow<'_>, EndpointHints) + Sync,
        merge: impl Fn(&mut S, S),
        mut on_error: impl FnMut(FlowError),
    ) -> Folded<S> {
        let workers = workers.max(1);
        let (block_tx, block_rx) = std::sync::mpsc::sync_channel::<Block>(workers * 2);
        // Shared by the workers alone: when they are all gone (a panic),
        // the reader's next send fails instead of waiting for ever.
        let block_rx = std::sync::Arc::new(std::sync::Mutex::new(block_rx));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<BlockDone>();
        let label = self.label.clone();
        let (states, records) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let done_tx = done_tx.clone();
                    let block_rx = std::sync::Arc::clone(&block_rx);
                    let (init, observe, label) = (&init, &observe, &label);
                    scope.spawn(move || {
                        let mut state = init();
                        let mut cache = EndpointCache::default();
                        loop {
                            // A poisoned lock means another worker panicked:
                            // stop taking work; the scope re-raises it.
                            let next = match block_rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => break,
                            };
                            let Ok(block) = next else { break };
                            let done = fold_block(block, label, &mut state, &mut cache, observe);
                            if done_tx.send(done).is_err() {
                                break;
                            }
                        }
                        state
                    })
                })
                .collect();
            drop(done_tx);
            drop(block_rx);
            let mut order = InOrder::default();
            let mut records = 0u64;
            let mut deliver = |done: BlockDone, order: &mut InOrder, reader: &mut Self| {
                for done in order.ready(done) {
                    records += done.records;
                    reader.skipped_records += done.skipped;
                    done.errors.into_iter().for_each(&mut on_error);
                    order.free.push(done.bytes);
                }
            };
            let mut seq = 0u64;
            while let Some(block) = self.next_block(seq, &mut order.free) {
                let block = match block {
                    Ok(block) => block,
                    Err(e) => {
                        let error = BlockDone {
                            seq,
                            bytes: Vec::new(),
                            records: 1,
                            skipped: 0,
                            errors: vec![e],
                        };
                        deliver(error, &mut order, self);
                        seq += 1;
                        continue;
                    }
                };
                seq += 1;
                if block_tx.send(block).is_err() {
                    break;
                }
                while let Ok(done) = done_rx.try_recv() {
                    deliver(done, &mut order, self);
                }
            }
            drop(block_tx);
            for done in done_rx.iter() {
                deliver(done, &mut order, self);
            }
            let states: Vec<S> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect();
            (states, records)
        });
        let mut states = states.into_iter();
        let mut state = states.next().unwrap_or_else(&init);
        for other in states {
            merge(&mut state, other);
        }
        Folded { state, records }
    }

    /// The next block of whole records (`None` at the end of the stream),
    /// in a buffer from `free` when there is one; an overlong line or a
    /// read error is an error of its own.
    fn next_block(
        &mut self,
        seq: u64,
        free: &mut Vec<Vec<u8>>,
    ) -> Option<Result<Block, FlowError>> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        match self.detect_layout() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        // Room for the block and the end of the line it stops in, so that
        // a block does not grow to twice its size for its last line.
        let mut bytes = free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.block_bytes + 64 * 1024));
        bytes.clear();
        match self.layout {
            Layout::Lines => self.next_lines(seq, bytes),
            Layout::Array => self.next_elements(seq, bytes),
            Layout::Unknown | Layout::Done => None,
        }
    }

    /// Whole lines, about [`BLOCK_BYTES`] of them.
    fn next_lines(&mut self, seq: u64, mut bytes: Vec<u8>) -> Option<Result<Block, FlowError>> {
        let first_line = self.line + 1;
        // Fill the block straight from the reader: a BufReader with an
        // empty buffer reads into a slice this large without copying it
        // through its own buffer first. A recycled buffer is only zeroed
        // where it was shorter.
        bytes.resize(self.block_bytes, 0);
        let mut filled = 0;
        while filled < self.block_bytes {
            match self.reader.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(self.line + 1, format!("cannot read: {e}"))));
                }
            }
        }
        bytes.truncate(filled);
        // Where the line the block stops in starts, once the block is full.
        let mut last_line_start = None;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) => {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(self.line + 1, format!("cannot read: {e}"))));
                }
            };
            if buf.is_empty() {
                if bytes.is_empty() {
                    return None;
                }
                if bytes.last() != Some(&b'\n') {
                    // The last line, without its newline.
                    self.line += 1;
                }
                break;
            }
            if bytes.len() < self.block_bytes {
                // Take whole buffers until the block is full…
                let n = buf.len().min(self.block_bytes - bytes.len());
                bytes.extend_from_slice(&buf[..n]);
                self.reader.consume(n);
                continue;
            }
            // …then up to the end of the line the block stops in.
            let line_start = *last_line_start
                .get_or_insert_with(|| memchr::memrchr(b'\n', &bytes).map_or(0, |i| i + 1));
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    bytes.extend_from_slice(&buf[..=i]);
                    self.reader.consume(i + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    bytes.extend_from_slice(buf);
                    self.reader.consume(n);
                }
            }
            let tail = bytes.len() - line_start;
            if tail > MAX_RECORD_BYTES {
                // A line too long to be a record: the lines before it are
                // read now, the line itself is skipped and reported.
                let lines_before = memchr::memchr_iter(b'\n', &bytes).count();
                let line = first_line + lines_before;
                if let Err(e) = skip_line(&mut self.reader) {
                    self.layout = Layout::Done;
                    return Some(Err(self.error(line, format!("cannot read: {e}"))));
                }
                self.line = line;
                bytes.truncate(bytes.len() - tail);
                let error = self.error(
                    line,
                    format!("record longer than {MAX_RECORD_BYTES} bytes: skipped"),
                );
                if bytes.is_empty() {
                    return Some(Err(error));
                }
                // Hand over the lines before it; the error comes with the
                // next block (one line later than they all are).
                self.pending_error = Some(error);
                return Some(Ok(Block {
                    seq,
                    bytes,
                    layout: BlockLayout::Lines { first_line },
                }));
            }
        }
        self.line += memchr::memchr_iter(b'\n', &bytes).count();
        Some(Ok(Block {
            seq,
            bytes,
            layout: BlockLayout::Lines { first_line },
        }))
    }

    /// Whole elements of the array, about [`BLOCK_BYTES`] of them.
    fn next_elements(&mut self, seq: u64, mut bytes: Vec<u8>) -> Option<Result<Block, FlowError>> {
        let mut elements = Vec::new();
        while bytes.len() < self.block_bytes {
            match self.next_element() {
                None => break,
                Some(Err(e)) => {
                    if elements.is_empty() {
                        return Some(Err(e));
                    }
                    self.pending_error = Some(e);
                    break;
                }
                Some(Ok(line)) => {
                    let start = bytes.len();
                    bytes.extend_from_slice(&self.buffer);
                    elements.push((line, start..bytes.len()));
                }
            }
        }
        if elements.is_empty() {
            return None;
        }
        Some(Ok(Block {
            seq,
            bytes,
            layout: BlockLayout::Elements(elements),
        }))
    }
}

/// Blocks finished by the workers, given back in the order they were read.
#[derive(Default)]
struct InOrder {
    next: u64,
    waiting: std::collections::BTreeMap<u64, BlockDone>,
    /// Buffers the workers are done with.
    free: Vec<Vec<u8>>,
}

impl InOrder {
    /// `done` and every block waiting behind it, once it is their turn.
    fn ready(&mut self, done: BlockDone) -> Vec<BlockDone> {
        self.waiting.insert(done.seq, done);
        let mut ready = Vec::new();
        while let Some(done) = self.waiting.remove(&self.next) {
            self.next += 1;
            ready.push(done);
        }
        ready
    }
}

/// Parses every record of a block and folds its flows into `state`.
fn fold_block<S>(
    block: Block,
    label: &str,
    state: &mut S,
    cache: &mut EndpointCache,
    observe: &(impl Fn(&mut S, &Flow<'_>, EndpointHints) + Sync),
) -> BlockDone {
    let mut done = BlockDone {
        seq: block.seq,
        bytes: Vec::new(),
        records: 0,
        skipped: 0,
        errors: Vec::new(),
    };
    let mut record =
        |line: usize, bytes: &[u8], done: &mut BlockDone| match parse_record_cached(bytes, cache) {
            Ok(Some((flow, hints))) => {
                done.records += 1;
                observe(state, &flow, hints);
            }
            Ok(None) => done.skipped += 1,
            Err(message) => {
                done.records += 1;
                done.errors.push(FlowError {
                    file: label.to_string(),
                    line,
                    message,
                });
            }
        };
    match &block.layout {
        BlockLayout::Lines { first_line } => {
            let mut line = *first_line;
            let mut start = 0;
            let text = &block.bytes;
            while start < text.len() {
                let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
                let bytes = &text[start..end];
                if !bytes.iter().all(u8::is_ascii_whitespace) {
                    record(line, bytes, &mut done);
                }
                line += 1;
                start = end + 1;
            }
        }
        BlockLayout::Elements(elements) => {
            for (line, range) in elements {
                record(*line, &block.bytes[range.clone()], &mut done);
            }
        }
    }
    done.bytes = block.bytes;
    done
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
            match self.detect_layout() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
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
    let mut record: HubbleFlow<'_, HubbleFlow<'_>> =
        sonic_rs::from_slice(bytes).map_err(unreadable)?;
    fn parsed<'r, F>(mut f: HubbleFlow<'r, F>) -> Result<Flow<'r>, String> {
        let (source, destination) = (f.source.take(), f.destination.take());
        to_flow(f, endpoint(source), endpoint(destination))
    }
    let flow = match record.flow.take() {
        Some(inner) => {
            let mut flow = parsed(inner)?;
            if flow.time.is_none() {
                flow.time = record.time.map(|t| t.0);
            }
            flow
        }
        // The record is the flow itself (`-o json`).
        None if record.is_flow() => parsed(record)?,
        None => return Ok(None),
    };
    Ok(Some(flow))
}

/// Why a record could not be read: not JSON at all, or JSON that is not
/// a Hubble flow.
fn unreadable(e: sonic_rs::Error) -> String {
    if e.is_syntax() || e.is_eof() {
        format!("not JSON: {e}")
    } else {
        format!("not a Hubble flow: {e}")
    }
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

/// The flow of a record whose `source` and `destination` objects the
/// caller already made into `source` and `destination` (addresses and
/// Services are the record's and are added here).
fn to_flow<'a: 'x, 'x, F, E>(
    f: HubbleFlow<'a, F, E>,
    source: FlowEndpoint<'x>,
    destination: FlowEndpoint<'x>,
) -> Result<Flow<'x>, String> {
    let (ip_source, ip_destination) = f.ip.map_or((None, None), |i| (i.source, i.destination));
    let source = with_address(source, ip_source, "IP.source", f.source_service)?;
    let destination = with_address(
        destination,
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

/// `endpoint` with the packet's address on its side and the Service
/// Hubble resolved it to.
fn with_address<'a: 'x, 'x>(
    endpoint: FlowEndpoint<'x>,
    ip: Option<Str<'a>>,
    ip_field: &str,
    service: Option<Box<Service<'a>>>,
) -> Result<FlowEndpoint<'x>, String> {
    let service = service
        .map(|s| *s)
        .and_then(|s| Some((non_empty(s.namespace)?, non_empty(s.name)?)))
        .map(|(namespace, name)| FlowService { namespace, name });
    Ok(FlowEndpoint {
        ip: endpoint_ip(ip.as_deref(), ip_field)?,
        service,
        ..endpoint
    })
}

/// A `source` or `destination` object (an absent one is an endpoint
/// known by its address alone).
fn endpoint(e: Option<Endpoint<'_>>) -> FlowEndpoint<'_> {
    let Some(e) = e else {
        return FlowEndpoint::default();
    };
    let (labels, reserved) = endpoint_labels(e.labels.into_iter().flatten().map(|Str(l)| l));
    FlowEndpoint {
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
        ip: None,
        service: None,
    }
}

/// The endpoints of the records a worker read, by the text of their
/// `source` / `destination` object: the same pods appear in flow after
/// flow, written alike, and looking an object up by its text costs a
/// fraction of parsing it again. Holds at most [`EndpointCache::CAPACITY`]
/// endpoints (it starts over when full), so memory stays bounded whatever
/// the input.
#[derive(Default)]
pub(crate) struct EndpointCache {
    index: std::collections::HashMap<Box<[u8]>, u32, foldhash::fast::FixedState>,
    endpoints: Vec<FlowEndpoint<'static>>,
    /// How many times the cache started over: with the index, it names
    /// an endpoint text for as long as this worker reads ([`EndpointHints`]).
    generation: u64,
}

/// What the reader knows of a flow's endpoints: for each, a number that
/// it gives every endpoint object written with the same text and no
/// other (see [`kubefence_core::learn::Learner::observe_hinted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointHints {
    pub source: Option<EndpointHint>,
    pub destination: Option<EndpointHint>,
}

impl EndpointCache {
    const CAPACITY: usize = 16 * 1024;

    /// Room for the two endpoints of one record: indexes handed out
    /// before this call are not valid after it.
    fn make_room(&mut self) {
        if self.endpoints.len() + 2 > Self::CAPACITY {
            self.index.clear();
            self.endpoints.clear();
            self.generation += 1;
        }
    }

    /// The index of the endpoint written as `text`, parsed when it is new;
    /// `None` for an absent object.
    fn intern(
        &mut self,
        text: Option<sonic_rs::LazyValue<'_>>,
        field: &str,
    ) -> Result<Option<u32>, String> {
        let Some(text) = text else {
            return Ok(None);
        };
        let raw = text.as_raw_str().as_bytes();
        if let Some(&i) = self.index.get(raw) {
            return Ok(Some(i));
        }
        let parsed: Endpoint<'_> =
            sonic_rs::from_slice(raw).map_err(|e| format!("not a Hubble flow: {field}: {e}"))?;
        let i = u32::try_from(self.endpoints.len()).unwrap_or(u32::MAX);
        self.endpoints.push(endpoint(Some(parsed)).into_owned());
        self.index.insert(raw.into(), i);
        Ok(Some(i))
    }

    fn hint(&self, i: Option<u32>) -> Option<EndpointHint> {
        i.map(|i| (self.generation << 32) | u64::from(i))
    }

    /// Endpoint `i` (or the empty one), borrowing its text from the cache.
    fn get(&self, i: Option<u32>) -> FlowEndpoint<'_> {
        let Some(e) = i.and_then(|i| self.endpoints.get(i as usize)) else {
            return FlowEndpoint::default();
        };
        fn borrow(text: &str) -> Cow<'_, str> {
            Cow::Borrowed(text)
        }
        FlowEndpoint {
            namespace: e.namespace.as_deref().map(borrow),
            labels: e
                .labels
                .iter()
                .map(|(k, v)| (borrow(k), borrow(v)))
                .collect(),
            reserved: e.reserved.clone(),
            pod_name: e.pod_name.as_deref().map(borrow),
            workloads: e
                .workloads
                .iter()
                .map(|w| FlowWorkload {
                    name: borrow(&w.name),
                    kind: borrow(&w.kind),
                })
                .collect(),
            identity: e.identity,
            ip: None,
            service: None,
        }
    }
}

/// [`parse_record`] with the `source` and `destination` objects looked up
/// in (or added to) `cache`: the same flow, read faster.
fn parse_record_cached<'r>(
    bytes: &'r [u8],
    cache: &'r mut EndpointCache,
) -> Result<Option<(Flow<'r>, EndpointHints)>, String> {
    type Lazy<'r> = sonic_rs::LazyValue<'r>;
    let mut record: HubbleFlow<'r, HubbleFlow<'r, IgnoredAny, Lazy<'r>>, Lazy<'r>> =
        sonic_rs::from_slice(bytes).map_err(unreadable)?;
    fn cached<'r, F>(
        mut f: HubbleFlow<'r, F, sonic_rs::LazyValue<'r>>,
        cache: &'r mut EndpointCache,
    ) -> Result<(Flow<'r>, EndpointHints), String> {
        cache.make_room();
        let source = cache.intern(f.source.take(), "source")?;
        let destination = cache.intern(f.destination.take(), "destination")?;
        let cache: &'r EndpointCache = cache;
        let hints = EndpointHints {
            source: cache.hint(source),
            destination: cache.hint(destination),
        };
        Ok((
            to_flow(f, cache.get(source), cache.get(destination))?,
            hints,
        ))
    }
    let flow = match record.flow.take() {
        Some(inner) => {
            let (mut flow, hints) = cached(inner, cache)?;
            if flow.time.is_none() {
                flow.time = record.time.map(|t| t.0);
            }
            (flow, hints)
        }
        None if record.is_flow() => cached(record, cache)?,
        None => return Ok(None),
    };
    Ok(Some(flow))
}

/// `k8s:key=value` (the caller checked the prefix) as `(key, value)`,
/// borrowed from the record when the label was.
fn k8s_label(label: Cow<'_, str>) -> (Cow<'_, str>, Cow<'_, str>) {
    fn split(text: &str) -> (&str, &str) {
        let rest = text.strip_prefix("k8s:").unwrap_or(text);
        // Labels are short: a plain scan is quicker than a string search.
        match rest.bytes().position(|b| b == b'=') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        }
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

/// A record: a jsonpb line (`F` is the flow inside it) or a bare flow.
/// A flow inside a flow is not Hubble's: it is read and ignored.
/// `E` is how the `source` and `destination` objects are read: parsed
/// ([`Endpoint`]) or kept as their text for [`EndpointCache`]. Fields
/// that most flows lack are boxed: the record is moved several times on
/// its way to a [`Flow`], and its size was a tenth of the reading time.
#[derive(Deserialize)]
struct HubbleFlow<'a, F = IgnoredAny, E = Endpoint<'a>> {
    /// Set on a jsonpb line: the flow inside the GetFlowsResponse.
    #[serde(default = "Option::default")]
    flow: Option<F>,
    #[serde(borrow, default)]
    time: Option<Str<'a>>,
    #[serde(default)]
    verdict: Option<EnumValue<'a>>,
    #[serde(rename = "IP", alias = "ip", borrow, default)]
    ip: Option<Ip<'a>>,
    #[serde(default)]
    l4: Option<L4>,
    #[serde(default = "Option::default")]
    source: Option<E>,
    #[serde(default = "Option::default")]
    destination: Option<E>,
    #[serde(rename = "Type", alias = "type", default)]
    type_: Option<EnumValue<'a>>,
    #[serde(alias = "trafficDirection", default)]
    traffic_direction: Option<EnumValue<'a>>,
    #[serde(alias = "isReply", default)]
    is_reply: Option<BoolValue>,
    #[serde(alias = "eventType", default)]
    event_type: Option<EventType>,
    #[serde(borrow, default)]
    l7: Option<Box<L7<'a>>>,
    #[serde(alias = "sourceService", borrow, default)]
    source_service: Option<Box<Service<'a>>>,
    #[serde(alias = "destinationService", borrow, default)]
    destination_service: Option<Box<Service<'a>>>,
}

#[derive(Deserialize)]
struct Service<'a> {
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    #[serde(borrow, default)]
    namespace: Option<Str<'a>>,
}

impl<F, E> HubbleFlow<'_, F, E> {
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
