//! The API's OpenAPI 3.1 document, generated from the code: each handler's
//! `#[utoipa::path]` (method, path, parameters, bodies) and the wire types' `ToSchema`
//! (feature `openapi` of palmline-shared), gathered by the one route table,
//! [`super::routes`], which registers a route and its documentation in one act. Published at
//! `GET /v1/openapi.json`.
//!
//! Who may read it: any valid Palmline client certificate (kiosk or operator). It says
//! nothing that is not in the source, but the server answers no one without a certificate,
//! and this endpoint is no exception.
//!
//! Never describe a route here by hand: a route that is not in the route table is neither
//! served nor documented (server/tests/openapi.rs compares the router with the document).

use super::{AnyCaller, ApiError};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use palmline_shared::api::{ErrorBody, ErrorCode, ErrorDetail};
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, Ref, Response as DocResponse};
use utoipa::{Modify, OpenApi};

/// Security scheme: the TLS client certificate every request needs.
pub const MTLS: &str = "mutualTLS";
/// Security scheme: a shopper's session token, `Authorization: Bearer <token>`.
pub const SHOPPER: &str = "shopperSession";
/// Security scheme: a cashier's session token in the `Cashier-Session` header.
pub const CASHIER: &str = "cashierSession";

/// Tag of the operations a kiosk certificate may call.
pub const KIOSK: &str = "kiosk";
/// Tag of the operations an operator (admin) certificate may call.
pub const OPERATOR: &str = "operator";
/// Tag of the operations any Palmline certificate may call.
pub const ANY: &str = "any";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palmline API",
        description = "Palm-biometric payments: kiosks and operators talk to the server over \
            mutual TLS. Every request needs a client certificate issued by the server's CA \
            (security scheme `mutualTLS`); the certificate's role decides what it may call \
            (tags `kiosk`, `operator`, `any`), and a kiosk's id and merchant come from its \
            certificate, never from a body. Mutating requests carry an `Idempotency-Key` \
            (a retry returns the first answer and moves nothing). Money is \
            `{\"amount\": \"12.34\", \"currency\": \"EUR\"}`. Every error is \
            `{\"error\": {\"code\", \"message\"}}` with a stable code. Responses carry an \
            `x-request-id` naming the request in the server's logs."
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&Security),
    tags(
        (name = "kiosk", description = "A kiosk certificate (SAN URIs `urn:palmline:kiosk:ID` and `urn:palmline:merchant:NAME`); an operator certificate gets 403 `forbidden`."),
        (name = "operator", description = "An operator certificate (`urn:palmline:admin:NAME`); a kiosk certificate gets 403 `forbidden`."),
        (name = "any", description = "Any valid Palmline client certificate."),
    )
)]
pub struct ApiDoc;

/// The security schemes, and the client certificate as the default requirement of every
/// operation (an operation that lists its own requirements lists `mutualTLS` too).
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            MTLS,
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate issued by this server's CA (`palmline-server pki \
                     issue-kiosk` or `issue-admin`), checked in the TLS handshake against the \
                     CA and the CRL. No request is answered without one."
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
        components.add_security_scheme(
            SHOPPER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A shopper's session token from `POST /v1/sessions`, valid at the kiosk \
                         that opened it for a few minutes.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CASHIER,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                palmline_shared::api::CASHIER_SESSION_HEADER,
                "A cashier's session token from `POST /v1/cashier-sessions`, opened at the same kiosk.",
            ))),
        );
        doc.security = Some(vec![SecurityRequirement::new(MTLS, Vec::<String>::new())]);
    }
}

/// The `Idempotency-Key` header of a mutating request.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyKey(
    /// 1-128 printable ASCII characters, new for each new request and the same for its
    /// retries; the same key with another request is 422 `idempotency_mismatch`.
    #[param(min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    pub String,
);

/// The document, built once from the route table.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = super::routes().into_openapi();
        with_error_responses(&mut doc);
        doc
    })
}

/// Every operation answers its errors in one shape: documented once here as its `4XX` and
/// `5XX` responses, rather than in each handler's annotation.
fn with_error_responses(doc: &mut utoipa::openapi::OpenApi) {
    let error = |what: &str| {
        DocResponse::builder()
            .description(what)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let r = &mut op.responses.responses;
            r.entry("4XX".into()).or_insert_with(|| {
                error("Refused, and nothing changed: `error.code` says why (a stable code).").into()
            });
            r.entry("5XX".into()).or_insert_with(|| {
                error("`unavailable` (503, with Retry-After: storage fault, nothing changed; retry with the same key) or `internal` (500).").into()
            });
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = ANY,
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json"))
)]
pub async fn openapi_json(AnyCaller(_): AnyCaller) -> Result<Response, ApiError> {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        serde_json::to_string(document()).expect("an OpenAPI document always serializes")
    });
    Ok(([(CONTENT_TYPE, "application/json")], json.as_str()).into_response())
}
