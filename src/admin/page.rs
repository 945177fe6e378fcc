//! Pages of the admin API's lists (`GET /api/v1/sites`, `GET /api/v1/certificates`):
//! `?limit=N` (default 1000, at most 10,000) and `&after=<cursor>`, the `next` of the page
//! before. Each page costs its own size, not the whole list's JSON: a console or a script
//! walks a million sites in pages. `&status=` keeps the sites in one status (the
//! certificates in one state) and `&q=` those with a name containing the text; a filtered
//! page also says how many items match (one pass over the list).

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::ApiError;
use super::errors::ErrorCode;

/// Items in a page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 1000;
/// The most items a page may hold.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// `?limit=&after=`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
    status: Option<String>,
    q: Option<String>,
    kind: Option<String>,
}

/// Longest `q` (a host name is at most 253 characters).
const MAX_QUERY: usize = 253;

/// What a list handler takes: the query, or why it is not one.
pub(crate) type PageRequest = Result<Query<PageQuery>, QueryRejection>;

/// A page request, checked.
#[derive(Debug)]
pub(crate) struct Page {
    pub limit: usize,
    /// Items come after this cursor (`None`: from the start).
    pub after: Option<String>,
    /// Only items in this status (state).
    pub status: Option<String>,
    /// Only items with a name containing this (lowercase).
    pub q: Option<String>,
    /// Certificates only: of sites from the config file (`Some(true)`) or registered
    /// through the API (`Some(false)`); `?kind=configured|registered`.
    pub configured: Option<bool>,
}

impl Page {
    /// The page a query asks for; a clear 400 for anything else.
    pub(crate) fn of(query: PageRequest) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::bad_request(ErrorCode::BadPage, message);
        let Query(query) = query.map_err(|e| {
            bad(format!(
                "{}; a page is asked for with ?limit=1..{MAX_LIMIT}&after=<the previous page's next>",
                e.body_text()
            ))
        })?;
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(bad(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        let q = query.q.filter(|q| !q.is_empty());
        if q.as_ref().is_some_and(|q| q.len() > MAX_QUERY) {
            return Err(bad(format!("q is at most {MAX_QUERY} characters")));
        }
        let configured = match query.kind.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some("configured") => Some(true),
            Some("registered") => Some(false),
            Some(other) => {
                return Err(bad(format!(
                    "kind is `configured` or `registered`, not `{other}`"
                )));
            }
        };
        Ok(Self {
            limit,
            configured,
            after: query.after.filter(|a| !a.is_empty()),
            status: query.status.filter(|s| !s.is_empty()),
            q: q.map(|q| q.to_ascii_lowercase()),
        })
    }

    /// Whether the page is filtered.
    pub(crate) fn filtered(&self) -> bool {
        self.status.is_some() || self.q.is_some() || self.configured.is_some()
    }

    /// Whether an item with `status` and `names` passes the filter.
    pub(crate) fn keeps<'a>(
        &self,
        status: impl FnOnce() -> String,
        mut names: impl Iterator<Item = &'a str>,
    ) -> bool {
        self.q
            .as_deref()
            .is_none_or(|q| names.any(|name| name.contains(q)))
            && self.status.as_deref().is_none_or(|s| status() == s)
    }

    /// How many items to ask the list for: one more than the page, to know whether
    /// another page follows.
    pub(crate) fn ask(&self) -> usize {
        self.limit + 1
    }

    /// `items` (as many as [`ask`](Self::ask) said) cut to the page, and the `next`
    /// cursor (`cursor` of the page's last item) when more follow.
    pub(crate) fn cut<T>(
        &self,
        mut items: Vec<T>,
        cursor: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        let next = if more { items.last().map(cursor) } else { None };
        (items, next)
    }
}
