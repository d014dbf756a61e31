-- One SMTP session as libmilter's own client (miltertest) plays it, at the
-- protocol version VERSION (2 or 6), against vouch at SOCKET. Run by
-- milter/miltertest_test.go; every check that fails raises an error, and
-- the script ends by printing "session ok".
--
-- 127.0.0.10 is mail.good.test, confirmed; good.test's SPF allows it.
-- 127.0.0.13 is mail.other.test, confirmed; good.test's SPF does not.

local version = tonumber(VERSION)

local function expect(conn, stage, want)
	local got = mt.getreply(conn)
	if got ~= want then
		error(stage .. ": reply " .. string.format("%q", string.char(got)) .. ", want " .. string.format("%q", string.char(want)))
	end
end

local function check(err, stage)
	if err ~= nil then
		error(stage .. ": " .. err)
	end
end

local function session(ip, helo)
	local conn = mt.connect(SOCKET, 40, 0.05)
	if conn == nil then
		error("connect to " .. SOCKET)
	end
	check(mt.negotiate(conn, version, nil, nil), "negotiate")
	-- What vouch asks for: at version 6, no reply before RCPT, no end of
	-- headers, no DATA, no unknown commands; at version 2 none of these
	-- exist.
	for _, o in ipairs({ SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_HDR, SMFIP_NOEOH, SMFIP_NODATA, SMFIP_NOUNKNOWN }) do
		if mt.test_option(conn, o) ~= (version >= 6) then
			error(string.format("protocol option 0x%x %s", o, version >= 6 and "not asked for" or "asked for at version 2"))
		end
	end
	if mt.test_option(conn, SMFIP_NR_RCPT) then
		error("SMFIP_NR_RCPT asked for: the decision is at RCPT")
	end
	if not mt.test_option(conn, SMFIP_NOBODY) then
		error("the body asked for")
	end
	if not mt.test_action(conn, SMFIF_ADDHDRS) or not mt.test_action(conn, SMFIF_CHGHDRS) then
		error("header actions not asked for")
	end
	check(mt.macro(conn, SMFIC_CONNECT, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "[" .. ip .. "]"), "connect macros")
	check(mt.conninfo(conn, "[" .. ip .. "]", ip), "connect")
	expect(conn, "connect", SMFIR_CONTINUE)
	check(mt.helo(conn, helo), "helo")
	expect(conn, "helo", SMFIR_CONTINUE)
	check(mt.macro(conn, SMFIC_MAIL, "i", "4QUEUEID"), "mail macros")
	check(mt.mailfrom(conn, "<alice@good.test>"), "mail")
	expect(conn, "mail", SMFIR_CONTINUE)
	return conn
end

-- A sender SPF allows: accepted, our fields added, the forged one removed.
local conn = session("127.0.0.10", "mail.good.test")
check(mt.rcptto(conn, "<bob@vouch.test>"), "rcpt")
expect(conn, "rcpt", SMFIR_CONTINUE)
check(mt.header(conn, "From", "<alice@good.test>"), "header")
check(mt.header(conn, "Authentication-Results", "mx.vouch.test; spf=pass smtp.mailfrom=forged.test"), "header")
-- An MTA does not send what the milter negotiated away.
if not mt.test_option(conn, SMFIP_NOEOH) then
	check(mt.eoh(conn), "eoh")
end
check(mt.eom(conn), "eom")
expect(conn, "eom", SMFIR_CONTINUE)
if not mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results") then
	error("no Authentication-Results inserted")
end
if not mt.eom_check(conn, MT_HDRINSERT, "Received-SPF") then
	error("no Received-SPF inserted")
end
local ar = mt.getheader(conn, "Authentication-Results", 0)
if ar == nil or not string.find(ar, "spf=pass", 1, true) or not string.find(ar, "iprev=pass", 1, true) then
	error("Authentication-Results " .. tostring(ar))
end
if not mt.eom_check(conn, MT_HDRCHANGE, "Authentication-Results") and not mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results") then
	error("the forged Authentication-Results was left")
end
-- A second message on the same connection is judged again.
check(mt.abort(conn), "abort")
check(mt.mailfrom(conn, "<carol@good.test>"), "mail 2")
expect(conn, "mail 2", SMFIR_CONTINUE)
check(mt.rcptto(conn, "<bob@vouch.test>"), "rcpt 2")
expect(conn, "rcpt 2", SMFIR_CONTINUE)
check(mt.disconnect(conn), "disconnect")

-- A sender SPF does not allow: refused at RCPT with vouch's reply.
conn = session("127.0.0.13", "mail.other.test")
check(mt.rcptto(conn, "<bob@vouch.test>"), "rcpt")
expect(conn, "rcpt", SMFIR_REPLYCODE)
check(mt.disconnect(conn), "disconnect")

mt.echo("session ok")
