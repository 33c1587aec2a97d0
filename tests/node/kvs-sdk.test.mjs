// The Kinesis Video Streams API through the AWS SDK for JavaScript v3
// (client-kinesis-video and client-kinesis-video-archived-media), pointed at
// a real edged recording a test camera: what an application built on the
// SDK sees.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  KinesisVideoClient, DescribeStreamCommand, GetDataEndpointCommand, ListStreamsCommand,
} from '@aws-sdk/client-kinesis-video';
import {
  KinesisVideoArchivedMediaClient, ListFragmentsCommand, GetClipCommand, GetImagesCommand,
  GetMediaForFragmentListCommand, GetHLSStreamingSessionURLCommand,
} from '@aws-sdk/client-kinesis-video-archived-media';
import { startEdged } from './edged.mjs';

let edged, video, media;
const credentials = { accessKeyId: 'edged', secretAccessKey: 'edged' };

before(async () => {
  edged = await startEdged(`cameras:
  - name: lobby
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
`);
  video = new KinesisVideoClient({ endpoint: edged.url, region: 'eu-west-1', credentials });
  // As an application does: ask the control plane where the data is.
  const { DataEndpoint } = await video.send(new GetDataEndpointCommand({
    StreamName: 'lobby', APIName: 'GET_CLIP' }));
  media = new KinesisVideoArchivedMediaClient({ endpoint: DataEndpoint, region: 'eu-west-1', credentials });
  for (let i = 0; i < 100; i++) {
    const { Fragments } = await media.send(new ListFragmentsCommand({ StreamName: 'lobby' }));
    if (Fragments.length >= 5) break;
    await new Promise((r) => setTimeout(r, 250));
  }
});

after(async () => {
  video?.destroy();
  media?.destroy();
  assert.equal(await edged.stop(), 0);
});

test('DescribeStream and ListStreams', async () => {
  const { StreamInfo } = await video.send(new DescribeStreamCommand({ StreamName: 'lobby' }));
  assert.equal(StreamInfo.StreamName, 'lobby');
  assert.equal(StreamInfo.Status, 'ACTIVE');
  assert.ok(StreamInfo.CreationTime instanceof Date);
  assert.ok(Math.abs(StreamInfo.CreationTime.getTime() - Date.now()) < 60000);
  const { StreamInfoList } = await video.send(new ListStreamsCommand({}));
  assert.deepEqual(StreamInfoList.map((s) => s.StreamName), ['lobby']);
  await assert.rejects(video.send(new DescribeStreamCommand({ StreamName: 'none' })),
                       (e) => e.name === 'ResourceNotFoundException' && e.$metadata.httpStatusCode === 404);
});

test('ListFragments with a time range, as Dates', async () => {
  const end = new Date(), start = new Date(end.getTime() - 60000);
  const { Fragments } = await media.send(new ListFragmentsCommand({
    StreamName: 'lobby',
    FragmentSelector: { FragmentSelectorType: 'SERVER_TIMESTAMP',
                        TimestampRange: { StartTimestamp: start, EndTimestamp: end } },
  }));
  assert.ok(Fragments.length >= 5);
  for (const f of Fragments) {
    assert.match(f.FragmentNumber, /^\d+$/);
    assert.ok(f.ServerTimestamp instanceof Date && f.ProducerTimestamp instanceof Date);
    assert.ok(f.FragmentSizeInBytes > 1000);
    assert.ok(f.FragmentLengthInMilliseconds >= 900);
  }
});

test('GetClip streams one MP4', async () => {
  const end = new Date(), start = new Date(end.getTime() - 4000);
  const out = await media.send(new GetClipCommand({
    StreamName: 'lobby',
    ClipFragmentSelector: { FragmentSelectorType: 'SERVER_TIMESTAMP',
                            TimestampRange: { StartTimestamp: start, EndTimestamp: end } },
  }));
  assert.equal(out.ContentType, 'video/mp4');
  const bytes = Buffer.from(await out.Payload.transformToByteArray());
  assert.equal(bytes.subarray(4, 8).toString(), 'ftyp');
  assert.ok(bytes.includes('moov') && bytes.includes('mdat'));
});

test('GetMediaForFragmentList streams Matroska', async () => {
  const { Fragments } = await media.send(new ListFragmentsCommand({ StreamName: 'lobby', MaxResults: 2 }));
  const out = await media.send(new GetMediaForFragmentListCommand({
    StreamName: 'lobby', Fragments: Fragments.map((f) => f.FragmentNumber) }));
  const bytes = Buffer.from(await out.Payload.transformToByteArray());
  assert.equal(bytes.readUInt32BE(0), 0x1a45dfa3);
  const tags = bytes.toString('latin1').split('AWS_KINESISVIDEO_FRAGMENT_NUMBER').length - 1;
  assert.equal(tags, Fragments.length);
});

test('GetImages and GetHLSStreamingSessionURL', async () => {
  const end = new Date(Date.now() - 1000), start = new Date(end.getTime() - 3000);
  const { Images } = await media.send(new GetImagesCommand({
    StreamName: 'lobby', ImageSelectorType: 'SERVER_TIMESTAMP', StartTimestamp: start,
    EndTimestamp: end, SamplingInterval: 1000, Format: 'JPEG', HeightPixels: 180,
  }));
  assert.equal(Images.length, 3);
  for (const image of Images) {
    assert.equal(image.Error, undefined);
    const jpeg = Buffer.from(image.ImageContent, 'base64');
    assert.equal(jpeg.readUInt16BE(0), 0xffd8);
  }
  const { HLSStreamingSessionURL } = await media.send(new GetHLSStreamingSessionURLCommand({
    StreamName: 'lobby', PlaybackMode: 'LIVE' }));
  const playlist = await (await fetch(HLSStreamingSessionURL)).text();
  assert.match(playlist, /^#EXTM3U/);
  assert.match(playlist, /#EXT-X-MAP:URI="init\/1\.mp4"/);
});
