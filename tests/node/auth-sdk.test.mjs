// The AWS SDK for JavaScript against an edged with authentication on: its
// SigV4 signatures are checked over HTTP/2 (the Kinesis client as it comes,
// which signs :authority) and HTTP/1.1, with the right secret and a wrong
// one; the Kinesis Video and API Gateway management clients too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  KinesisClient, ListStreamsCommand, PutRecordCommand, GetShardIteratorCommand, GetRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { KinesisVideoClient, ListStreamsCommand as ListVideoStreams } from '@aws-sdk/client-kinesis-video';
import { ApiGatewayManagementApiClient, GetConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startEdged } from './edged.mjs';

const ID = 'AKIDSDKTEST', SECRET = 'sdk/secret+value';
let edged;

before(async () => {
  const credentials = join(process.env.TMPDIR ?? '/tmp', `edged-sdk-creds-${process.pid}`);
  writeFileSync(credentials, `[sdk]\naws_access_key_id = ${ID}\naws_secret_access_key = ${SECRET}\n`);
  edged = await startEdged(`streams:
  - name: signed
cameras:
  - name: demo
    source: test://
`, `  auth:
    enabled: "on"
    sigv4:
      credentials_file: ${credentials}
`);
});

after(async () => assert.equal(await edged.stop(), 0));

const options = (secret, http1) => ({
  endpoint: edged.url, region: 'eu-west-1',
  credentials: { accessKeyId: ID, secretAccessKey: secret },
  ...(http1 ? { requestHandler: new NodeHttpHandler() } : {}),
});

for (const http1 of [false, true]) {
  test(`Kinesis over ${http1 ? 'HTTP/1.1' : 'HTTP/2'}`, async () => {
    const kinesis = new KinesisClient(options(SECRET, http1));
    const key = `key with spaces/and:colons ${http1}`;
    const put = await kinesis.send(new PutRecordCommand({
      StreamName: 'signed', PartitionKey: key, Data: Buffer.from(`payload ${http1}`) }));
    const { ShardIterator } = await kinesis.send(new GetShardIteratorCommand({
      StreamName: 'signed', ShardId: put.ShardId, ShardIteratorType: 'AT_SEQUENCE_NUMBER',
      StartingSequenceNumber: put.SequenceNumber }));
    const { Records } = await kinesis.send(new GetRecordsCommand({ ShardIterator }));
    assert.equal(Buffer.from(Records[0].Data).toString(), `payload ${http1}`);
    assert.equal(Records[0].PartitionKey, key);

    const wrong = new KinesisClient({ ...options('not the secret', http1), maxAttempts: 1 });
    await assert.rejects(wrong.send(new ListStreamsCommand({})), { name: 'InvalidSignatureException' });
    const stranger = new KinesisClient({ ...options(SECRET, http1), maxAttempts: 1,
      credentials: { accessKeyId: 'AKIDNOBODY', secretAccessKey: SECRET } });
    await assert.rejects(stranger.send(new ListStreamsCommand({})), { name: 'UnrecognizedClientException' });
  });
}

test('Kinesis Video and API Gateway management', async () => {
  const video = new KinesisVideoClient(options(SECRET));
  const { StreamInfoList } = await video.send(new ListVideoStreams({}));
  assert.deepEqual(StreamInfoList.map((s) => s.StreamName), ['demo']);
  const wrongVideo = new KinesisVideoClient({ ...options('nope'), maxAttempts: 1 });
  await assert.rejects(wrongVideo.send(new ListVideoStreams({})), { name: 'InvalidSignatureException' });
  // Signed properly, the management API answers for itself (no such connection).
  const management = new ApiGatewayManagementApiClient(options(SECRET));
  await assert.rejects(management.send(new GetConnectionCommand({ ConnectionId: 'nobody' })),
                       (e) => e.$metadata.httpStatusCode === 410 || e.$metadata.httpStatusCode === 404);
  const wrongManagement = new ApiGatewayManagementApiClient({ ...options('nope'), maxAttempts: 1 });
  await assert.rejects(wrongManagement.send(new GetConnectionCommand({ ConnectionId: 'nobody' })),
                       (e) => e.$metadata.httpStatusCode === 403);
});
