//! Timestamps in the two forms the API uses.

use k8s_openapi::jiff::Timestamp;

/// Now, to the second, as `metadata.creationTimestamp` and condition times are written.
pub(crate) fn now_seconds() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now as a typed `Time` (seconds precision, as the kubelet reports).
pub(crate) fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
}
