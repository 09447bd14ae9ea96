import CCurl
import Glibc

/// The one place that calls libcurl's global functions and checks its return codes.
/// Nothing here traps: a refused option or a failed global init becomes an error the
/// caller turns into a failed request (or a client that cannot be created).
enum Curl {
    /// `curl_global_init` must run once, before any thread uses curl; false if it failed.
    static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK

    /// A multi-handle call's result as an error naming the call, or nothing when it succeeded.
    static func check(_ code: CURLMcode, _ call: StaticString) throws(HTTPClientError) {
        guard code != CURLM_OK else { return }
        throw HTTPClientError(.transport, request: "\(call)", detail: String(cString: curl_multi_strerror(code)))
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: Int) -> CURLcode {
        ccurl_easy_setopt_long(easy, option, value)
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: UnsafeRawPointer?) -> CURLcode {
        ccurl_easy_setopt_ptr(easy, option, value)
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: String) -> CURLcode {
        // curl copies string options (since 7.17), so the temporary C string may go.
        value.withCString { ccurl_easy_setopt_ptr(easy, option, $0) }
    }

    static func responseCode(_ easy: UnsafeMutableRawPointer) -> Int {
        var code = 0
        _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    /// Seconds from start until the request was about to be sent; 0 when no connection
    /// was ever ready (a reused connection still counts, unlike CONNECT_TIME).
    static func pretransferTime(_ easy: UnsafeMutableRawPointer) -> Double {
        var seconds = 0.0
        _ = ccurl_easy_getinfo_double(easy, CURLINFO_PRETRANSFER_TIME, &seconds)
        return seconds
    }
}

/// Raises the soft limit on open files to the hard limit, once per process: ten thousand
/// requests in flight need ten thousand sockets, and the usual soft limit is 1,024.
package enum FileDescriptorLimit {
    /// The soft limit after raising it.
    package static let raised: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }()
}
