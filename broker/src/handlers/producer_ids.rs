//! InitProducerId for idempotent producers. Transactions are not supported:
//! a transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a fatal
//! error that stops the client with a clear message instead of a retry loop.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;

use super::Context;

pub async fn init(ctx: &Context, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let reply = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if r.transactional_id.is_some() {
        return reply.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: an idempotent producer may ask to bump the epoch of its id.
    if r.producer_id.0 >= 0 && r.producer_epoch >= 0 && r.producer_epoch < i16::MAX - 1 {
        return reply
            .with_producer_id(r.producer_id)
            .with_producer_epoch(r.producer_epoch + 1);
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => reply
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            reply.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
