"""One decision path for every credential at a door (`point.AccessPoint`): a face the face gate
confirmed, a card or PIN from a reader, a visitor pass or a resident's rotating code read from a
QR code on the door camera. Each kind is a plug-in (`kinds/<kind>.py`, one line in
`kinds.KINDS`) that only says whom the credential names; the rules, the event and the door are
the access point's, the same for all."""
