// A Lambda handler as it would be deployed to AWS, nothing edged-specific.
export const handler = async (event, context) => {
  if (event.fail) {
    throw new TypeError('asked to fail');
  }
  if (event.allocMB) {
    const buffer = Buffer.alloc(event.allocMB * 1024 * 1024, 1);
    return { allocated: buffer.length };
  }
  console.log('handling', context.awsRequestId);
  return {
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    remainingMs: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext,
  };
};
