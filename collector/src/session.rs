//! The cookieless sessioniser (being written).
