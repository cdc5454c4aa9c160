//! One conformance suite, written once and run against both transports
//! (docs/architecture.md §5): every scenario runs as `<scenario>::amqp` (the real RabbitMQ) and
//! `<scenario>::in_process`. A behaviour that differs between them is a bug in one of them.

mod common;

#[path = "conformance/async_calls.rs"]
mod async_scenarios;
#[path = "conformance/auth.rs"]
mod auth_scenarios;
#[path = "conformance/describe.rs"]
mod describe_scenarios;
#[path = "conformance/events.rs"]
mod event_scenarios;
#[path = "conformance/http2.rs"]
mod http2_scenarios;
#[path = "conformance/http.rs"]
mod http_scenarios;
#[path = "conformance/limits.rs"]
mod limit_scenarios;
#[path = "conformance/retries.rs"]
mod retry_scenarios;
#[path = "conformance/rpc.rs"]
mod rpc_scenarios;
#[path = "conformance/streams.rs"]
mod stream_scenarios;
#[path = "conformance/timers.rs"]
mod timer_scenarios;

/// Runs each named scenario of a scenario module on both transports, as tests named
/// `<group>::<scenario>::{amqp, in_process}`.
macro_rules! on_both_transports {
    ($group:ident = $module:ident: $($scenario:ident),* $(,)?) => {
        mod $group {
            $(
                mod $scenario {
                    use crate::common::Kind;

                    #[tokio::test]
                    async fn amqp() {
                        crate::$module::$scenario(Kind::Amqp).await
                    }

                    #[tokio::test]
                    async fn in_process() {
                        crate::$module::$scenario(Kind::InProcess).await
                    }
                }
            )*
        }
    };
}

on_both_transports!(http = http_scenarios:
    ok_with_object_array_and_empty_bodies,
    request_id_is_echoed_and_roots_the_call_id_stack,
    accept_language_and_user_agent_reach_the_service,
    bad_requests_are_400,
    not_found_unknown_service_and_method,
    other_methods_are_405_with_allow,
    conflict_is_409_and_other_remote_errors_500_or_503,
    configured_error_statuses_extend_the_table,
    body_limit_is_413_and_content_type_415,
    transport_closed_is_503_and_not_ready,
    deadline_passed_is_504_and_the_late_reply_is_dropped,
    x_timeout_ms_is_capped_by_the_maximum,
    only_exposed_methods_are_served_and_documented,
    above_max_in_flight_the_gateway_answers_503_at_once,
    a_one_millisecond_deadline_is_504_not_an_outage,
);

on_both_transports!(auth = auth_scenarios:
    without_credentials_rpc_is_401_and_probes_and_docs_stay_open,
    api_keys_identify_the_caller_to_the_service,
    hs256_jwts_are_checked_and_passed_on,
    rs256_jwts_are_checked_against_the_public_key,
    protected_docs_need_credentials_and_probes_never_do,
    without_auth_no_identity_reaches_the_service,
);

on_both_transports!(http_limits = limit_scenarios:
    a_slow_loris_client_is_cut_off_while_others_are_served,
    an_idle_keep_alive_connection_is_closed_after_the_header_timeout,
    huge_or_too_many_headers_are_431_and_the_gateway_keeps_serving,
    a_body_that_stops_arriving_is_408_problem_json,
    a_stalled_client_does_not_hold_up_a_graceful_shutdown,
);

on_both_transports!(http2 = http2_scenarios:
    h2c_with_prior_knowledge_gets_the_http1_contract,
    one_connection_carries_calls_up_to_the_stream_limit,
    an_oversize_header_list_is_431_and_the_connection_carries_on,
    a_client_stalled_in_the_preface_is_cut_off_after_the_header_timeout,
);

on_both_transports!(rpc = rpc_scenarios:
    five_clients_times_1000_increments_end_at_5000,
    two_instances_share_the_load,
    at_most_max_workers_handlers_run_at_once,
    a_caller_that_disconnects_leaves_no_pending_entry,
    stopping_a_service_finishes_in_flight_work_and_requeues_the_rest,
);

on_both_transports!(events = event_scenarios:
    pool_once_broadcast_per_instance_singleton_once,
    events_dispatched_while_a_service_is_down_arrive_after_restart,
    a_failing_handler_is_retried_once_then_dead_lettered,
    a_call_through_two_services_carries_the_request_id_stack,
    the_deadline_travels_down_the_chain,
    a_handler_dispatches_and_the_context_follows_the_event,
    the_w3c_trace_crosses_the_gateway_and_services,
);

on_both_transports!(retries = retry_scenarios:
    a_handler_failing_twice_is_handled_on_the_third_attempt_after_its_delays,
);

on_both_transports!(describe = describe_scenarios:
    services_are_listed_with_methods_and_live_instances,
    a_service_of_timers_alone_is_announced_and_listeners_are_not,
    a_known_service_with_no_live_instance_is_503_at_once,
    the_openapi_document_is_built_live_from_descriptors,
    the_docs_page_is_served_from_the_binary,
    cors_allows_only_configured_origins,
    metrics_count_calls_by_service_method_and_status,
);

on_both_transports!(streams = stream_scenarios:
    events_reach_every_client_in_dispatch_order,
    a_slow_client_is_ended_and_the_others_keep_receiving,
    idle_streams_get_keep_alive_comments,
    names_exposure_and_credentials_are_checked_first,
    the_last_client_leaving_ends_the_subscription,
);

on_both_transports!(async_calls = async_scenarios:
    an_accepted_call_answers_as_the_synchronous_one_would,
    refusals_come_before_the_202,
    a_result_expires_after_its_ttl,
    only_the_caller_collects_its_result,
);

on_both_transports!(timers = timer_scenarios:
    a_once_per_service_timer_runs_in_one_instance_and_hands_over,
);
