//! A visitor's context between the contract's messages and the shared types the edges and the
//! core hold it in ([`socketgram_common::context`]), written once for both directions.

use socketgram_common::context::{Page, Vouched};

use crate::v1;

impl From<&Vouched> for v1::VerifiedVisitor {
    fn from(v: &Vouched) -> Self {
        Self {
            name: v.name.clone(),
            email: v.email.clone(),
            fields: v.fields.clone().into_iter().collect(),
        }
    }
}

impl From<&v1::VerifiedVisitor> for Vouched {
    fn from(v: &v1::VerifiedVisitor) -> Self {
        Self {
            name: v.name.clone(),
            email: v.email.clone(),
            fields: v.fields.clone().into_iter().collect(),
        }
    }
}

impl From<&Page> for v1::PageContext {
    fn from(p: &Page) -> Self {
        Self {
            url: p.url.clone(),
            title: p.title.clone(),
            language: p.language.clone(),
            time_zone: p.time_zone.clone(),
        }
    }
}

impl From<&v1::PageContext> for Page {
    fn from(p: &v1::PageContext) -> Self {
        Self {
            url: p.url.clone(),
            title: p.title.clone(),
            language: p.language.clone(),
            time_zone: p.time_zone.clone(),
        }
    }
}
