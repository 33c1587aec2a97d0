// A Kinesis event source handler as it would be deployed to AWS, reporting
// partial batch failures: records whose data is "bad" are listed in
// batchItemFailures, the others are handled.
import { appendFileSync } from 'node:fs';

export const handler = async (event) => {
  const batchItemFailures = [];
  for (const record of event.Records) {
    const data = Buffer.from(record.kinesis.data, 'base64').toString();
    appendFileSync(process.env.SEEN_LOG, `${record.kinesis.sequenceNumber} ${data}\n`);
    if (data === 'bad') {
      batchItemFailures.push({ itemIdentifier: record.kinesis.sequenceNumber });
    }
  }
  return { batchItemFailures };
};
