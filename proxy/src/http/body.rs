//! A response body on its way to the client: masked, recorded piece by
//! piece as it streams (never buffered whole), and held back while the
//! store has too much of this session's record still to take.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use gatehouse_core::event::{Body as EventBody, Direction, HttpBody, MaskHit, Masked};
use gatehouse_store::StoreError;
use http_body::{Body, Frame};

use super::session::SessionLog;
use super::{BoxError, now_us};

/// A streaming masker of one body (JSON or text lines).
pub trait StreamMask: Send {
    /// Masks `chunk`, appending what can be sent now to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), String>;
    /// The body ended: appends what was held back.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), String>;
    /// What was masked since the last call, by rule and key.
    fn take_hits(&mut self) -> Vec<MaskHit>;
}

type Flushing = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// The tap over an upstream response body.
pub struct Tap<B> {
    inner: B,
    log: Arc<SessionLog>,
    exchange: u32,
    mask: Option<Box<dyn StreamMask>>,
    flushing: Option<Flushing>,
    done: bool,
    /// Masked output read ahead by [`Tap::read_ahead`], not yet sent.
    initial: Option<Bytes>,
    /// Trailers read ahead, not yet sent.
    trailers: Option<Frame<Bytes>>,
    /// The upstream body ended during the read-ahead.
    inner_done: bool,
}

impl<B> Tap<B> {
    /// Taps `inner`, the body of exchange `exchange`, masking with `mask`.
    pub fn new(
        inner: B,
        log: Arc<SessionLog>,
        exchange: u32,
        mask: Option<Box<dyn StreamMask>>,
    ) -> Tap<B> {
        Tap {
            inner,
            log,
            exchange,
            mask,
            flushing: None,
            done: false,
            initial: None,
            trailers: None,
            inner_done: false,
        }
    }

    /// Records one piece as sent, with its masking summary first.
    fn record(&mut self, bytes: &Bytes, end: bool) {
        let at = now_us();
        if let Some(m) = &mut self.mask {
            let hits = m.take_hits();
            if !hits.is_empty() {
                self.log.record(
                    at,
                    EventBody::Masked(Masked {
                        hits,
                        cells: Vec::new(),
                    }),
                );
            }
        }
        self.log.record(
            at,
            EventBody::HttpBody(Box::new(HttpBody {
                exchange: self.exchange,
                dir: Direction::ToClient,
                bytes: bytes.clone(),
                end,
            })),
        );
        self.log.count(0, 0, bytes.len() as u64);
        if self.log.backlogged() {
            let log = Arc::clone(&self.log);
            self.flushing = Some(Box::pin(async move { log.flush().await }));
        }
    }

    /// A failure: recorded, and the client's response is cut (its framing
    /// then tells it the body is incomplete).
    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        tracing::warn!(exchange = self.exchange, "response cut: {why}");
        self.log.record(
            now_us(),
            EventBody::Error(gatehouse_core::event::ErrorInfo {
                severity: "ERROR".into(),
                code: "502".into(),
                message: format!("the response was cut: {why}"),
                from_gateway: true,
            }),
        );
        Poll::Ready(Some(Err(why.into())))
    }
}

impl<B> Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads and masks the body until it has something to send (or it
    /// ends), so that a body the masker refuses from its very start is
    /// answered 502 before the response head goes out, instead of being
    /// cut. `Err` says why. A body that sends nothing within `limit` is
    /// left to stream (a watch with no events yet).
    pub async fn read_ahead(&mut self, limit: std::time::Duration) -> Result<(), String> {
        let Some(mask) = self.mask.as_mut() else {
            return Ok(());
        };
        let inner = &mut self.inner;
        let read = async {
            loop {
                let frame = std::future::poll_fn(|cx| Pin::new(&mut *inner).poll_frame(cx)).await;
                match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            let mut out = BytesMut::with_capacity(data.len());
                            mask.feed(&data, &mut out)
                                .map_err(|e| format!("it cannot be masked: {e}"))?;
                            if !out.is_empty() {
                                return Ok((Some(out.freeze()), None, false));
                            }
                        }
                        Err(trailers) => return Ok((None, Some(trailers), false)),
                    },
                    Some(Err(e)) => {
                        let e: BoxError = e.into();
                        return Err(format!("the target failed: {e}"));
                    }
                    None => {
                        let mut out = BytesMut::new();
                        mask.finish(&mut out)
                            .map_err(|e| format!("it cannot be masked: {e}"))?;
                        return Ok((Some(out.freeze()), None, true));
                    }
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Err(_) => Ok(()),
            Ok(Err(why)) => Err(why),
            Ok(Ok((initial, trailers, done))) => {
                self.initial = initial;
                self.trailers = trailers;
                self.inner_done = done;
                Ok(())
            }
        }
    }
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(f) = &mut self.flushing {
                let flushed = ready!(f.as_mut().poll(cx));
                self.flushing = None;
                if let Err(e) = flushed {
                    return self.fail(format!("the store cannot record it: {e}"));
                }
            }
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(first) = self.initial.take() {
                let end = self.inner_done;
                self.record(&first, end);
                if end {
                    self.done = true;
                    let log = Arc::clone(&self.log);
                    self.flushing = Some(Box::pin(async move { log.flush().await }));
                }
                if !first.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                continue;
            }
            if let Some(trailers) = self.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        // Trailers pass as they are.
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    let out = match &mut self.mask {
                        Some(m) => {
                            let mut out = BytesMut::with_capacity(data.len());
                            if let Err(e) = m.feed(&data, &mut out) {
                                return self.fail(format!("it could not be masked: {e}"));
                            }
                            out.freeze()
                        }
                        None => data,
                    };
                    if out.is_empty() {
                        continue;
                    }
                    self.record(&out, false);
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    return self.fail(format!("the upstream failed: {e}"));
                }
                None => {
                    self.done = true;
                    let mut tail = BytesMut::new();
                    if let Some(m) = &mut self.mask
                        && let Err(e) = m.finish(&mut tail)
                    {
                        return self.fail(format!("it could not be masked: {e}"));
                    }
                    let tail = tail.freeze();
                    self.record(&tail, true);
                    let log = Arc::clone(&self.log);
                    self.flushing = Some(Box::pin(async move { log.flush().await }));
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.flushing.is_none()
    }
}
