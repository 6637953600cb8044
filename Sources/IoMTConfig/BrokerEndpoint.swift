/// One broker address from `broker.url`: `mqtt://host[:port]` or `mqtts://host[:port]`.
///
/// The host is a DNS name, an IPv4 address or a bracketed IPv6 address (`[::1]:1883`); it is
/// stored without brackets. The port defaults to 1883 (`mqtt`) or 8883 (`mqtts`).
/// Credentials in the URL (`user:pass@`) are refused: they belong in `username` and
/// `password_file`.
public struct BrokerEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// True for `mqtts://` (TLS).
    public var tls: Bool
    /// Host name or address, without IPv6 brackets.
    public var host: String
    /// TCP port, 1...65535.
    public var port: Int

    /// Creates an endpoint (unchecked; ``init(parsing:)`` checks).
    public init(tls: Bool, host: String, port: Int? = nil) {
        self.tls = tls
        self.host = host
        self.port = port ?? (tls ? 8883 : 1883)
    }

    /// The URL scheme: `mqtts` or `mqtt`.
    public var scheme: String { tls ? "mqtts" : "mqtt" }

    /// True if the host is an IPv6 address literal.
    public var isIPv6: Bool { host.contains(":") }

    /// The canonical URL, e.g. `mqtts://broker.example.org:8883` or `mqtt://[::1]:1883`.
    public var description: String {
        "\(scheme)://\(isIPv6 ? "[\(host)]" : host):\(port)"
    }

    /// Why a URL was refused. The message never repeats credentials found in the URL.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong, e.g. `unsupported scheme 'http' (use mqtt:// or mqtts://)`.
        public var message: String
        /// The message.
        public var description: String { message }
    }

    /// Parses `mqtt://host[:port][/]` or `mqtts://…`.
    public init(parsing text: String) throws(ParseError) {
        func fail(_ message: String) -> ParseError { ParseError(message: message) }
        let trimmed = text
        guard !trimmed.isEmpty else { throw fail("must not be empty") }
        guard let schemeEnd = trimmed.firstRange(of: "://") else {
            throw fail("must be a URL like mqtt://host:1883 or mqtts://host:8883 (missing '://')")
        }
        let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "mqtt": tls = false
        case "mqtts": tls = true
        case "": throw fail("missing scheme (use mqtt:// or mqtts://)")
        default:
            let hint = ["ssl", "tls", "tcps", "mqtt+ssl", "wss", "https"].contains(scheme)
                ? " (for TLS use mqtts://)" : " (use mqtt:// or mqtts://)"
            throw fail("unsupported scheme '\(String(scheme.prefix(16)))'\(hint)")
        }
        var rest = Substring(trimmed[schemeEnd.upperBound...])
        if rest.contains("@") {
            throw fail("credentials in the URL are not allowed; use broker.username and broker.password_file")
        }
        if rest.contains("?") || rest.contains("#") {
            throw fail("a query or fragment is not allowed in a broker URL")
        }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...] == "/" else { throw fail("a path is not allowed in a broker URL") }
            rest = rest[..<slash]
        }
        var portText: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw fail("IPv6 address is missing its closing ']'")
            }
            let address = rest[rest.index(after: rest.startIndex)..<close]
            guard address.contains(":"),
                  address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw fail("'[\(String(address.prefix(64)))]' is not an IPv6 address")
            }
            host = String(address)
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw fail("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else {
                throw fail("too many ':' (write IPv6 addresses in brackets, e.g. mqtt://[::1]:1883)")
            }
            host = String(parts[0])
            if parts.count == 2 { portText = parts[1] }
            guard !host.isEmpty else { throw fail("missing host (e.g. mqtt://broker.example.org:1883)") }
            guard host.utf8.count <= 253,
                  host.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "." || $0 == "_" }),
                  !host.hasPrefix("."), !host.hasPrefix("-"), !host.contains("..") else {
                throw fail("invalid host '\(String(host.prefix(64)))'")
            }
        }
        if let portText {
            guard !portText.isEmpty else { throw fail("missing port number after ':'") }
            guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5,
                  let p = Int(portText), (1...65535).contains(p) else {
                throw fail("port must be a number from 1 to 65535, got '\(String(portText.prefix(16)))'")
            }
            port = p
        } else {
            port = tls ? 8883 : 1883
        }
    }
}
