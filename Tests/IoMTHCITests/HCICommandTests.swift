import Testing
@testable import IoMTHCI

@Suite struct HCICommandTests {
    @Test func opcodeSplitsIntoOGFAndOCF() {
        #expect(HCIOpcode.reset.rawValue == 0x0C03)
        #expect(HCIOpcode.reset.ogf == 0x03 && HCIOpcode.reset.ocf == 0x0003)
        #expect(HCIOpcode.leCreateConnection.rawValue == 0x200D)
        #expect(HCIOpcode(ogf: 0x3F, ocf: 0x3FF).rawValue == 0xFFFF)
        #expect(HCIOpcode.leReadBufferSizeV2.rawValue == 0x2060)
        #expect(HCIOpcode.reset.name == "HCI_Reset")
        #expect(HCIOpcode(rawValue: 0xFC01).name.contains("OGF 0x3f"))
    }

    @Test func everyOpcodeMatchesTheSpecTable() {
        let expected: [(HCIOpcode, UInt16)] = [
            (.disconnect, 0x0406), (.setEventMask, 0x0C01), (.reset, 0x0C03), (.writeLEHostSupport, 0x0C6D),
            (.readLocalVersionInformation, 0x1001), (.readBufferSize, 0x1005), (.readBDADDR, 0x1009),
            (.leSetEventMask, 0x2001), (.leReadBufferSize, 0x2002), (.leReadLocalSupportedFeatures, 0x2003),
            (.leSetRandomAddress, 0x2005), (.leSetScanParameters, 0x200B), (.leSetScanEnable, 0x200C),
            (.leCreateConnection, 0x200D), (.leCreateConnectionCancel, 0x200E), (.leConnectionUpdate, 0x2013),
            (.leReadRemoteFeatures, 0x2016), (.leEnableEncryption, 0x2019), (.leLongTermKeyRequestReply, 0x201A),
            (.leLongTermKeyRequestNegativeReply, 0x201B), (.leSetDataLength, 0x2022),
            (.leSetExtendedScanParameters, 0x2041), (.leSetExtendedScanEnable, 0x2042),
        ]
        for (op, raw) in expected { #expect(op.rawValue == raw, "\(op.name)") }
    }

    @Test func statusCodesAndNames() {
        #expect(HCIStatus.unknownConnectionIdentifier.rawValue == 0x02)
        #expect(HCIStatus.authenticationFailure.rawValue == 0x05)
        #expect(HCIStatus.pinOrKeyMissing.rawValue == 0x06)
        #expect(HCIStatus.connectionTimeout.rawValue == 0x08)
        #expect(HCIStatus.commandDisallowed.rawValue == 0x0C)
        #expect(HCIStatus.invalidHCICommandParameters.rawValue == 0x12)
        #expect(HCIStatus.remoteUserTerminated.rawValue == 0x13)
        #expect(HCIStatus.connectionTerminatedByLocalHost.rawValue == 0x16)
        #expect(HCIStatus.unsupportedRemoteFeature.rawValue == 0x1A)
        #expect(HCIStatus.unspecifiedError.rawValue == 0x1F)
        #expect(HCIStatus.lmpResponseTimeout.rawValue == 0x22)
        #expect(HCIStatus.connectionFailedToBeEstablished.rawValue == 0x3E)
        #expect(HCIStatus.operationCancelledByHost.rawValue == 0x44)
        #expect(HCIStatus.commandDisallowed.description == "Command Disallowed (0x0C)")
        #expect(HCIStatus(rawValue: 0xEE).name == "Unknown error 0xEE")
    }

    /// Bytes checked against the spec layouts; the scan parameters, random address and create
    /// connection bytes are the ones the Bumble 0.0.236 controller accepted in capture_bumble_events.py.
    @Test func commandsEncodeToSpecBytes() throws {
        let h = ConnectionHandle(rawValue: 0x0040)
        #expect(HCIPacket.command(.reset).h4Bytes == hex("01030c00"))
        #expect(HCICommand.readBDADDR.encoded == hex("091000"))
        #expect(HCICommand.readLocalVersionInformation.encoded == hex("011000"))
        #expect(HCICommand.readBufferSize.encoded == hex("051000"))
        #expect(HCICommand.leReadBufferSize.encoded == hex("022000"))
        #expect(HCICommand.leReadBufferSizeV2.encoded == hex("602000"))
        #expect(HCICommand.leReadLocalSupportedFeatures.encoded == hex("032000"))
        #expect(HCICommand.leCreateConnectionCancel.encoded == hex("0e2000"))
        #expect(HCICommand.setEventMask(0x3DBF_F807_FFFB_FFFF).encoded == hex("010c08 fffffbff07f8bf3d"))
        #expect(HCICommand.leSetEventMask(0x1F).encoded == hex("012008 1f00000000000000"))
        let rnd = try #require(BDAddress("C1:C2:C3:C4:C5:C6"))
        #expect(HCIPacket.command(.leSetRandomAddress(rnd)).h4Bytes == hex("01052006c6c5c4c3c2c1"))
        #expect(HCIPacket.command(.leSetScanParameters(active: true, intervalSlots: 0x10, windowSlots: 0x10,
                                                       ownAddressType: .randomDevice, filterPolicy: 0)).h4Bytes
                == hex("010b200701100010000100"))
        #expect(HCICommand.leSetScanEnable(true, filterDuplicates: false).encoded == hex("0c20020100"))
        let peer = LEAddress(try #require(BDAddress("C0:11:22:33:44:55")), type: .randomDevice)
        #expect(HCIPacket.command(.leCreateConnection(peer: peer, ownAddressType: .randomDevice,
                                                      scanIntervalSlots: 0x60, scanWindowSlots: 0x60,
                                                      connIntervalMin: 0x18, connIntervalMax: 0x28, maxLatency: 0,
                                                      supervisionTimeout10ms: 0x1F4)).h4Bytes
                == hex("010d2019 6000 6000 00 01 5544332211c0 01 1800 2800 0000 f401 0000 0000"))
        #expect(HCICommand.disconnect(h, reason: .remoteUserTerminated).encoded == hex("060403 4000 13"))
        let ltk = Array(UInt8(0)...UInt8(15))
        #expect(HCICommand.leEnableEncryption(h, random: 0x0102_0304_0506_0708, ediv: 0xBEEF, ltk: ltk).encoded
                == hex("19201c 4000 0807060504030201 efbe") + ltk)
        #expect(HCICommand.leLongTermKeyRequestReply(h, ltk: ltk).encoded == hex("1a2012 4000") + ltk)
        #expect(HCICommand.leLongTermKeyRequestNegativeReply(h).encoded == hex("1b2002 4000"))
        #expect(HCICommand.leConnectionUpdate(h, intervalMin: 6, intervalMax: 12, latency: 1, supervisionTimeout10ms: 400).encoded
                == hex("13200e 4000 0600 0c00 0100 9001 0000 0000"))
        #expect(HCICommand.leReadRemoteFeatures(h).encoded == hex("162002 4000"))
        #expect(HCICommand.writeLEHostSupport.encoded == hex("6d0c02 0100"))
        #expect(HCICommand.writeLEHostSupport(supported: false).encoded == hex("6d0c02 0000"))
        #expect(HCICommand.leSetDataLength(h, txOctets: 251, txTime: 2120).encoded == hex("222006 4000 fb00 4808"))
        #expect(HCICommand.leSetExtendedScanParameters(ownAddressType: .randomDevice, filterPolicy: 0,
                                                       le1M: .init(active: true, intervalSlots: 0x60, windowSlots: 0x30)).encoded
                == hex("412008 01 00 01 01 6000 3000"))
        #expect(HCICommand.leSetExtendedScanParameters(ownAddressType: .publicDevice, le1M: .init(active: false, intervalSlots: 0x10, windowSlots: 0x10),
                                                       leCoded: .init(active: true, intervalSlots: 0x20, windowSlots: 0x20)).encoded
                == hex("41200d 00 00 05 00 1000 1000 01 2000 2000"))
        #expect(HCICommand.leSetExtendedScanEnable(true, filterDuplicates: true, duration10ms: 0, period1280ms: 0).encoded
                == hex("422006 01 01 0000 0000"))
    }

    @Test func framerRoundTripsEveryCommand() throws {
        let h = ConnectionHandle(rawValue: 1)
        let cmds: [HCICommand] = [.reset, .leSetScanEnable(false, filterDuplicates: true), .disconnect(h),
                                  .leEnableEncryption(h, random: 0, ediv: 0, ltk: Array(repeating: 7, count: 16))]
        var f = H4Framer()
        #expect(try f.push(cmds.flatMap { HCIPacket.command($0).h4Bytes }) == cmds.map { .command($0) })
    }

    @Test func returnParametersDecode() throws {
        let v = try LocalVersionInformation.decode(hex("00 0d 0000 0d 0f00 0000"))
        #expect(v.status == .success && v.hciVersion == 0x0D && v.lmpVersion == 0x0D && v.companyIdentifier == 0x000F)
        let a = try ReadBDADDRResult.decode(hex("00 f5f4f3f2f1f0"))
        #expect(a.address.description == "F0:F1:F2:F3:F4:F5")
        let bredr = try BufferSize.decodeReadBufferSize(hex("00 fd03 40 0800 0100"))
        #expect(bredr.leACLDataPacketLength == 1021 && bredr.totalNumLEACLDataPackets == 8)
        let le = try BufferSize.decodeLEReadBufferSize(hex("00 1b00 0f"))
        #expect(le.leACLDataPacketLength == 27 && le.totalNumLEACLDataPackets == 15 && !le.sharesBREDRBuffers)
        let shared = try BufferSize.decodeLEReadBufferSize(hex("00 0000 00"))
        #expect(shared.sharesBREDRBuffers)
        #expect(shared.resolved(bredr: bredr).leACLDataPacketLength == 1021)
        #expect(le.resolved(bredr: bredr) == le)
        let v2 = try BufferSize.decodeLEReadBufferSizeV2(hex("00 fb00 04 2800 02"))
        #expect(v2.leACLDataPacketLength == 251 && v2.totalNumLEACLDataPackets == 4 && v2.isoDataPacketLength == 40 && v2.totalNumISODataPackets == 2)
        let feat = try LESupportedFeatures.decode(hex("00 ff49010000000000"))
        #expect(feat.features == 0x01_49FF)
    }

    @Test func truncatedReturnParametersNameTheField() {
        do {
            _ = try ReadBDADDRResult.decode(hex("00 010203"))
            Issue.record("expected a throw")
        } catch {
            #expect(error.packet == "HCI_Read_BD_ADDR return")
            #expect(error.underlying.field == "BD_ADDR" && error.underlying.needed == 6 && error.underlying.available == 3)
        }
        do {
            _ = try BufferSize.decodeLEReadBufferSizeV2(hex("00 1b00 0f 28"))
            Issue.record("expected a throw")
        } catch {
            #expect(error.underlying.field == "ISO_Data_Packet_Length")
            #expect(error.description.contains("HCI_LE_Read_Buffer_Size_v2"))
        }
    }
}
