// A Lambda handler as it would be deployed to AWS, nothing edged-specific.
export const handler = async (event, context) => {
  if (event.fail) {
    throw new TypeError('asked to fail');
  }
  console.log('handling', context.awsRequestId);
  return {
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    remainingMs: context.getRemainingTimeInMillis(),
  };
};
