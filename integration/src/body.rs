//! A body made of prepared frames, used by both the servers and the client.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::HeaderMap;

/// An HTTP body that yields a fixed list of data frames, then optional trailers, then
/// optionally an error that makes hyper abort the connection.
#[derive(Debug, Default)]
pub struct FrameBody {
    frames: VecDeque<Frame<Bytes>>,
    error_at_end: Option<String>,
    exact_length: Option<u64>,
}

impl FrameBody {
    /// Builds a body of one data frame whose length hyper announces (`content-length`).
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        let exact_length = Some(data.len() as u64);
        let mut frames = VecDeque::new();
        if !data.is_empty() {
            frames.push_back(Frame::data(data));
        }
        Self {
            frames,
            error_at_end: None,
            exact_length,
        }
    }

    /// Builds a body of the non-empty `chunks` as data frames with no announced length, followed
    /// by `trailers` when they are not empty. HTTP/1.1 sends it with chunked transfer encoding.
    pub fn chunked(chunks: Vec<Bytes>, trailers: HeaderMap) -> Self {
        let mut frames: VecDeque<Frame<Bytes>> = chunks
            .into_iter()
            .filter(|chunk| !chunk.is_empty())
            .map(Frame::data)
            .collect();
        if !trailers.is_empty() {
            frames.push_back(Frame::trailers(trailers));
        }
        Self {
            frames,
            error_at_end: None,
            exact_length: None,
        }
    }

    /// Builds a body that yields `prefix` and then fails, so hyper closes the connection before
    /// the length announced in the response headers was sent.
    pub fn truncated(prefix: impl Into<Bytes>, reason: &str) -> Self {
        let mut frames = VecDeque::new();
        frames.push_back(Frame::data(prefix.into()));
        Self {
            frames,
            error_at_end: Some(reason.to_owned()),
            exact_length: None,
        }
    }
}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.error_at_end.take() {
            Some(reason) => Poll::Ready(Some(Err(io::Error::other(reason)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.error_at_end.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}
