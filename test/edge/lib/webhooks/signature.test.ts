import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { newWebhookSecret } from "../../../../db/queries/webhooks/secret";
import { signWebhook, webhookHeaders } from "../../../../edge/lib/webhooks/signature";

describe("webhook signer", () => {
  it("produces headers the standardwebhooks reference implementation verifies", async () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const body = JSON.stringify({ type: "job.completed", timestamp: new Date().toISOString(), data: { id: "j1", name: "é ✓" } });
    const headers = await webhookHeaders([secret], "msg1", Date.now(), body);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it("matches the Standard Webhooks test vector", async () => {
    // From the specification's reference libraries.
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const sig = await signWebhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}');
    expect(sig).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });

  it("a changed body, id or secret does not verify", async () => {
    const secret = newWebhookSecret();
    const headers = await webhookHeaders([secret], "msg2", Date.now(), '{"a":1}');
    expect(() => new Webhook(secret).verify('{"a":2}', headers)).toThrow();
    expect(() => new Webhook(secret).verify('{"a":1}', { ...headers, "webhook-id": "msg3" })).toThrow();
    expect(() => new Webhook(newWebhookSecret()).verify('{"a":1}', headers)).toThrow();
  });

  it("signs with every secret given, so a receiver holding any one of them verifies, and one holding none does not", async () => {
    const [current, replaced] = [newWebhookSecret(), newWebhookSecret()];
    const body = '{"type":"webhook.test"}';
    const headers = await webhookHeaders([current, replaced], "msg4", Date.now(), body);
    expect(headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(new Webhook(current).verify(body, headers)).toEqual(JSON.parse(body));
    expect(new Webhook(replaced).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(newWebhookSecret()).verify(body, headers)).toThrow();
  });
});
