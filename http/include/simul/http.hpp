#pragma once

// simul::http: an HTTP client on the simul loop, built on libcurl. See
// docs/http.md for the guide.
//
// - <simul/http/client.hpp>  client, client_options, request, response, stream_response, get
// - <simul/http/errors.hpp>  request_error and its kinds, timeout_error
//
// libcurl is linked privately: none of these headers includes <curl/curl.h>.

#include <simul/http/client.hpp>
#include <simul/http/errors.hpp>
