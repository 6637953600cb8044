extension AgentConfig {
    /// A human-readable summary of the effective configuration, defaults included, for
    /// `iomt-agent config check`. It holds no secrets: only the path of `password_file`.
    public func renderSummary() -> String {
        var lines: [String] = []
        func add(_ key: String, _ value: String, indent: Int = 2) {
            lines.append(String(repeating: " ", count: indent) + "\(key): \(value)")
        }
        lines.append("gateway:")
        add("id", gateway.id)
        lines.append("state_dir: \(stateDir)")
        lines.append("log:")
        add("level", log.level.rawValue)

        lines.append("broker:")
        if broker.endpoints.count == 1 {
            add("url", broker.endpoints[0].description)
        } else {
            add("url", "(failover, in order)")
            for e in broker.endpoints { lines.append("    - \(e)") }
        }
        add("client_id", broker.clientID)
        add("protocol", broker.protocolVersion.rawValue)
        add("username", broker.username ?? "(none)")
        add("password_file", broker.passwordFile ?? "(none)")
        let tls = broker.endpoints.contains { $0.tls }
        add("tls", tls ? "yes" : "no (plain TCP)")
        if tls || broker.caFile != nil { add("ca_file", broker.caFile ?? "(system trust store)") }
        if let cert = broker.clientCertificate {
            add("cert_file", cert.certFile)
            add("key_file", cert.keyFile)
        } else if tls {
            add("client_certificate", "(none)")
        }
        add("qos", String(broker.qos.rawValue))
        add("topic_prefix", broker.topicPrefix)
        add("keepalive_s", String(broker.keepAliveSeconds))
        add("session_expiry_s", String(broker.sessionExpirySeconds))
        add("inflight_window", String(broker.inflightWindow))
        add("reconnect_min_ms", String(broker.reconnectMinMilliseconds))
        add("reconnect_max_ms", String(broker.reconnectMaxMilliseconds))
        add("status_interval_s", String(broker.statusIntervalSeconds))

        lines.append("buffer:")
        add("max_bytes", "\(ByteSize.format(buffer.maxBytes)) (\(buffer.maxBytes) bytes)")
        add("on_full", buffer.onFull.rawValue)
        add("order", buffer.order.rawValue)
        add("backlog_share", buffer.order == .liveFirst ? "\(buffer.backlogShare)" : "\(buffer.backlogShare) (used by live-first only)")
        add("commit_max_delay_ms", String(buffer.commitMaxDelayMilliseconds))
        add("commit_max_batch", String(buffer.commitMaxBatch))

        lines.append("output:")
        add("format", output.format.rawValue)

        lines.append("control:")
        add("socket", control.socket)
        add("group", control.group)

        if simulators.isEmpty {
            lines.append("simulators: (none)")
        } else {
            lines.append("simulators:")
            for s in simulators {
                var line = "  - \(s.id): \(s.profile.rawValue), patient \(s.patient), \(s.rate)/s"
                if let count = s.count { line += ", \(count) readings" }
                line += ", seed \(s.seed)"
                lines.append(line)
            }
        }
        if serial.isEmpty {
            lines.append("serial: (none)")
        } else {
            lines.append("serial:")
            for s in serial {
                var line = "  - \(s.id): \(s.profile.rawValue), patient \(s.patient), "
                switch s.port {
                case .path(let p): line += "port \(p)"
                case let .usb(v, p, sn):
                    line += "match usb \(hex4(v))" + (p.map { ":" + hex4($0) } ?? "") + (sn.map { " serial \($0)" } ?? "")
                }
                if let file = s.lineProfile { line += ", line_profile \(file)" }
                var overrides: [String] = []
                if let b = s.baud { overrides.append("baud \(b)") }
                if let b = s.dataBits { overrides.append("data_bits \(b)") }
                if let p = s.parity { overrides.append("parity \(p.rawValue)") }
                if let b = s.stopBits { overrides.append("stop_bits \(b)") }
                if let r = s.hardwareFlowControl { overrides.append("rtscts \(r)") }
                line += overrides.isEmpty ? ", line settings of the profile" : ", " + overrides.joined(separator: ", ")
                line += ", reconnect \(s.reconnectMinMilliseconds)-\(s.reconnectMaxMilliseconds) ms"
                lines.append(line)
            }
        }
        if let b = bluetooth {
            lines.append("bluetooth: adapter \(b.adapter)" + (b.snoop.map { ", snoop \($0)" } ?? "")
                         + ", connect timeout \(b.connectTimeoutMilliseconds) ms, reconnect \(b.reconnectMinMilliseconds)-\(b.reconnectMaxMilliseconds) ms")
            for d in b.devices {
                lines.append("  - \(d.id): \(d.profile.rawValue), patient \(d.patient), \(d.address) (\(d.addressType.rawValue))")
            }
            for c in b.broadcasters {
                lines.append("  - \(c.id): broadcaster, patient \(c.patient), \(c.address ?? "any address"), profile \(c.profile)"
                             + ", repeat window \(c.repeatWindowSeconds) s")
            }
        } else {
            lines.append("bluetooth: (none)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

private func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 4 - s.count) + s
}
