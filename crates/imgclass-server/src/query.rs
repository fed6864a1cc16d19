//! Query-string values.

use crate::error::ApiError;

/// A whole number from `min` to `max`, `default` when absent; otherwise a
/// 400 that names the parameter and its range.
pub fn bounded(
    name: &str,
    text: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(t) = text else {
        return Ok(default);
    };
    match t.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a whole number from {min} to {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_bounded() {
        let parse_top_k = |t| bounded("top_k", t, 3, 1, 20);
        assert_eq!(parse_top_k(None).unwrap(), 3);
        assert_eq!(parse_top_k(Some("20")).unwrap(), 20);
        for bad in ["0", "21", "-1", "three", ""] {
            assert!(parse_top_k(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            bounded("limit", Some("0"), 20, 1, 200)
                .unwrap_err()
                .to_string(),
            "limit must be a whole number from 1 to 200"
        );
    }
}
