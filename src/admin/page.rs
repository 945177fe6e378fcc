//! Pages of the admin API's lists (`GET /api/v1/sites`, `GET /api/v1/certificates`):
//! `?limit=N` (default 1000, at most 10,000) and `&after=<cursor>`, the `next` of the page
//! before. Each page costs its own size, not the whole list's JSON: a console or a script
//! walks a million sites in pages.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::ApiError;

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
}

/// What a list handler takes: the query, or why it is not one.
pub(crate) type PageRequest = Result<Query<PageQuery>, QueryRejection>;

/// A page request, checked.
#[derive(Debug)]
pub(crate) struct Page {
    pub limit: usize,
    /// Items come after this cursor (`None`: from the start).
    pub after: Option<String>,
}

impl Page {
    /// The page a query asks for; a clear 400 for anything else.
    pub(crate) fn of(query: PageRequest) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::bad_request("bad_page", message);
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
        Ok(Self {
            limit,
            after: query.after.filter(|a| !a.is_empty()),
        })
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
