import CCurl
import Glibc

/// The one place that calls libcurl's global functions and checks its return codes.
enum Curl {
    /// `curl_global_init` must run once, before any thread uses curl.
    static let initialized: Bool = {
        precondition(curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK, "curl_global_init failed")
        return true
    }()

    static func check(_ code: CURLcode, _ option: CURLoption) {
        precondition(code == CURLE_OK, "curl_easy_setopt(\(option.rawValue)) failed: \(String(cString: curl_easy_strerror(code)))")
    }

    static func check(_ code: CURLMcode, _ call: StaticString) {
        precondition(code == CURLM_OK, "\(call) failed: \(String(cString: curl_multi_strerror(code)))")
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: Int) {
        check(ccurl_easy_setopt_long(easy, option, value), option)
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: UnsafeRawPointer?) {
        check(ccurl_easy_setopt_ptr(easy, option, value), option)
    }

    static func set(_ easy: UnsafeMutableRawPointer, _ option: CURLoption, _ value: String) {
        // curl copies string options (since 7.17), so the temporary C string may go.
        value.withCString { check(ccurl_easy_setopt_ptr(easy, option, $0), option) }
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
public enum FileDescriptorLimit {
    /// The soft limit after raising it.
    public static let raised: Int = {
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
