import IoMTYAML

/// The `serial:` section (issue 4): USB-serial medical devices.
extension ConfigReader {
    mutating func buildSerial(_ top: Section, simulatorIDs: Set<String>) -> [AgentConfig.Serial]? {
        guard let node = value(top, "serial") else { return [] }
        guard case let .sequence(seq) = node else {
            report("serial", line(top, "serial"), "must be a list ('- profile: ...' entries), got \(describe(node))")
            return nil
        }
        var result: [AgentConfig.Serial] = []
        var seenIDs: [String: String] = [:]    // id -> key path of its first user
        var seenPorts: [String: String] = [:]  // port path or USB identity -> key path
        var ok = true
        for (index, item) in seq.enumerated() {
            let path = "serial[\(index)]"
            guard let s = section(item, path: path, parentLine: line(item, line(top, "serial")), keys: Keys.serial) else {
                ok = false
                continue
            }
            if isNull(item) {
                report(path, s.line, "is empty (an entry needs profile, patient and port or match)")
                ok = false
                continue
            }
            let before = problems.count
            // Defaults come from the memberwise initializer, the one place they are written down.
            let d = AgentConfig.Serial(id: "", profile: .contecV7, patient: "", port: .path(""))

            let profile: SerialProfileName? = requiredChoice(s, "profile")
            let patient = patientID(s)

            var port: AgentConfig.Serial.Port?
            var portKey: String?
            let hasPort = value(s, "port") != nil, hasMatch = value(s, "match") != nil
            switch (hasPort, hasMatch) {
            case (true, true):
                report(s.path("match"), line(s, "match"), "give either port or match, not both")
            case (false, false):
                report(s.path("port"), s.line,
                       "is required, or match (e.g. port: /dev/iomt/oximeter-1, or match: {vendor_id: 10c4, product_id: ea60})")
            case (true, false):
                if let (p, line) = optionalText(s, "port") {
                    if !p.hasPrefix("/") || p.hasSuffix("/") {
                        report(s.path("port"), line, "must be an absolute path of a device such as /dev/iomt/oximeter-1, got \"\(clip(p))\"")
                    } else {
                        port = .path(p)
                        portKey = p
                    }
                }
            case (false, true):
                if let m = section(s.values["match"], path: s.path("match"), parentLine: line(s, "match"), keys: Keys.serialMatch) {
                    let vendor = usbID(m, "vendor_id", required: true)
                    let product = usbID(m, "product_id", required: false)
                    var serial: String?
                    if let (text, line) = optionalText(m, "serial") {
                        if text.utf8.count > 126 {
                            report(m.path("serial"), line, "must be at most 126 bytes (a USB serial number string)")
                        } else {
                            serial = text
                        }
                    }
                    if let vendor {
                        port = .usb(vendorID: vendor, productID: product, serial: serial)
                        portKey = "usb \(vendor):\(product.map(String.init) ?? "*"):\(serial ?? "*")"
                    }
                }
            }

            var baud: Int?
            if value(s, "baud") != nil {
                let supported = AgentConfig.Serial.supportedBauds
                let (b, _) = integer(s, "baud", 1...10_000_000, default: 0,
                                     rangeMessage: "must be one of \(supported.map(String.init).joined(separator: ", "))")
                if supported.contains(Int(b)) {
                    baud = Int(b)
                } else if b != 0 {
                    report(s.path("baud"), line(s, "baud"),
                           "must be one of \(supported.map(String.init).joined(separator: ", ")), got \(b)")
                }
            }
            var dataBits: Int?
            if value(s, "data_bits") != nil { dataBits = Int(integer(s, "data_bits", 5...8, default: 8).0) }
            var stopBits: Int?
            if value(s, "stop_bits") != nil {
                stopBits = Int(integer(s, "stop_bits", 1...2, default: 1, rangeMessage: "must be 1 or 2").0)
            }
            let parity: SerialParity? = choice(s, "parity", default: nil)
            var rtscts: Bool?
            if let node = value(s, "rtscts") {
                if case let .scalar(scalar) = node, scalar.style == .plain,
                   ["true", "false"].contains(scalar.string) {
                    rtscts = scalar.string == "true"
                } else {
                    report(s.path("rtscts"), line(s, "rtscts"), "must be true or false, got \(describe(node))")
                }
            }
            let reconnectMin = integer(s, "reconnect_min_ms", 10...60_000, default: Int64(d.reconnectMinMilliseconds)).0
            let (reconnectMax, maxLine) = integer(s, "reconnect_max_ms", 10...600_000, default: Int64(d.reconnectMaxMilliseconds))
            if reconnectMax < reconnectMin {
                report(s.path("reconnect_max_ms"), maxLine ?? line(s, "reconnect_min_ms"),
                       "must be at least reconnect_min_ms (\(reconnectMin)), got \(reconnectMax)")
            }

            var lineProfile: String?
            if profile == .line {
                if let (p, line) = requiredText(s, "line_profile", example: "/etc/iomt-agent/profiles/rad8.yaml") {
                    if p.hasPrefix("/") { lineProfile = p } else {
                        report(s.path("line_profile"), line, "must be an absolute path, got \"\(clip(p))\"")
                    }
                }
            } else if value(s, "line_profile") != nil {
                report(s.path("line_profile"), line(s, "line_profile"), "is only used with profile: line")
            }

            var id: String?
            var idLine = s.line
            if let (explicit, line) = text(s, "id") {
                idLine = line
                if let problem = identifierProblem(explicit, maxLength: 64) {
                    report(s.path("id"), line, problem)
                } else {
                    id = explicit
                }
            } else if let profile {
                id = "serial-\(profile.rawValue)-\(index + 1)"
            }
            if let id {
                if let first = seenIDs[id] {
                    report(s.path("id"), idLine, "duplicate device id '\(id)' (also used by \(first))")
                } else if simulatorIDs.contains(id) {
                    report(s.path("id"), idLine, "duplicate device id '\(id)' (also used by a simulator)")
                } else {
                    seenIDs[id] = path
                }
            }
            if let portKey {
                let key = hasPort ? "port" : "match"
                if let first = seenPorts[portKey] {
                    report(s.path(key), line(s, key), "the same device as \(first) (a port can be read by one entry only)")
                } else {
                    seenPorts[portKey] = path
                }
            }

            guard problems.count == before, let profile, let patient, let port, let id else {
                ok = false
                continue
            }
            result.append(AgentConfig.Serial(
                id: id, profile: profile, patient: patient, port: port, baud: baud, dataBits: dataBits,
                parity: parity, stopBits: stopBits, hardwareFlowControl: rtscts,
                reconnectMinMilliseconds: Int(reconnectMin), reconnectMaxMilliseconds: Int(reconnectMax),
                lineProfile: lineProfile))
        }
        return ok ? result : nil
    }

    /// A USB vendor or product id: 1-4 hex digits as `lsusb` prints them (`10c4`, `0x10C4`, `1c3d`).
    /// Quoting is optional; a plain `0403` is read as the text it is, not as a number.
    mutating func usbID(_ s: Section, _ key: String, required: Bool) -> UInt16? {
        guard let node = value(s, key) else {
            if required { report(s.path(key), s.line, "is required (4 hex digits as lsusb shows them, e.g. \(key): 10c4)") }
            return nil
        }
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line(s, key), "must be 4 hex digits (e.g. 10c4), got \(describe(node))")
            return nil
        }
        var text = scalar.string
        if text.hasPrefix("0x") || text.hasPrefix("0X") { text.removeFirst(2) }
        guard (1...4).contains(text.count), let v = UInt16(text, radix: 16) else {
            report(s.path(key), line(s, key), "must be 4 hex digits (e.g. 10c4), got \(describe(node))")
            return nil
        }
        return v
    }
}
